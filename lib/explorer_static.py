"""The neuron explorer of the static book: a plotly figure with its JavaScript inlined, no kernel needed.

For every task and seed of a profile it holds (1) the per-neuron predictivity $\\mathrm{pred}_{l,n}$ as
a layer x neuron heatmap (`Experiment.neuron_scores`) and (2) for the `top` most predictive neurons
the activation $a_{l,p,n}(x)$ per class on `n_examples` test examples, at the prompt position where
the two classes' means differ most in those examples. A dropdown selects the task and seed; the
figure carries every selection's data, so it works offline in a plain HTML page.

    data = explorer_data(exp)                  # one forward pass per (task, seed) over n_examples
    fig = explorer_figure(data)                # plotly Figure with a task/seed dropdown
    html = explorer_html(fig)                  # <div> + inlined plotly.js, for IPython.display.HTML
    html = explorer_html(fig, BOOK_PLOTLY_JS)  # <div> + a script tag for the book's own copy of plotly.js

In the book the figure loads plotly.js from `book/_static/plotly/plotly.min.js` (one 4.8 MB file, served
with the book) rather than inlining it, so the executed notebook stays small; offline it works the same.

The activations are the same numbers as `lib.chapters.neuron_activations` (tested), read for the
few shown neurons in one pass instead of one pass per neuron.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from .models import Encoded
from .skill_neurons import iter_activations

if TYPE_CHECKING:
    from .experiments import Experiment

DIV_ID = "skill-neuron-explorer"
# plotly.js as the book serves it, relative to a page under book/experiments/ (the built tree mirrors the
# repository: <html>/book/experiments/explorer.html and <html>/_static/ from html_static_path)
BOOK_PLOTLY_JS = "../../_static/plotly/plotly.min.js"
CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")


@dataclass
class Selection:
    """What the explorer shows for one (task, seed)."""

    task: str
    seed: int
    scores: np.ndarray  # (layers, neurons) predictivity
    neurons: list[tuple[int, int]]  # (layer, neuron) of the top neurons, best first
    positions: list[int]  # the prompt position shown per top neuron
    activations: np.ndarray  # (examples, top) activation at that position
    labels: list[str]  # label name per example
    label_names: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.task} · seed {self.seed}"


def subset(enc: Encoded, n: int, seed: int = 0) -> tuple[Encoded, np.ndarray]:
    """At most `n` examples of `enc`, drawn without replacement with a fixed seed, in their order."""
    if len(enc) <= n:
        idx = np.arange(len(enc))
    else:
        idx = np.sort(np.random.default_rng(seed).choice(len(enc), size=n, replace=False))
    types = None if enc.token_type_ids is None else [enc.token_type_ids[i] for i in idx]
    return Encoded([enc.input_ids[i] for i in idx], types, np.asarray(enc.labels)[idx]), idx


def top_neurons(scores: np.ndarray, k: int) -> list[tuple[int, int]]:
    """The `k` (layer, neuron) pairs of highest predictivity over all layers, best first (ties: lower index)."""
    flat = np.argsort(-scores.ravel(), kind="stable")[:k]
    width = scores.shape[1]
    return [(int(i // width), int(i % width)) for i in flat]


def neuron_values(exp: Experiment, task: str, seed: int, neurons: Sequence[tuple[int, int]],
                  data: Encoded) -> np.ndarray:
    """(examples, len(neurons), prompt positions): the activations of `neurons` on `data`, one pass."""
    prompt = exp.prompt(task, seed)
    out = np.zeros((len(data), len(neurons), prompt.shape[0]), dtype=np.float32)
    if not neurons:
        return out
    layers_, width = exp.neuron_scores(task, seed).shape
    # batches as large as keep one batch's recorded activations near 80 MB (64 for MiniLM, 8 for base models)
    batch = int(max(8, min(64, 2e7 // (layers_ * prompt.shape[0] * width))))
    for idx, acts in iter_activations(exp.backbone, prompt, data, batch_size=batch):
        # acts: (batch, layers, positions, neurons) -> (batch, k, positions)
        picked = torch.stack([acts[:, layer, :, n] for layer, n in neurons], dim=1)
        out[idx] = picked.float().cpu().numpy()
    return out


def most_separating_position(values: np.ndarray, labels: np.ndarray) -> int:
    """The prompt position where the class means of one neuron's activations differ most (in sd units)."""
    classes = np.unique(labels)
    if len(classes) < 2:
        return 0
    means = np.stack([values[labels == c].mean(axis=0) for c in classes])
    spread = means.max(axis=0) - means.min(axis=0)
    sd = values.std(axis=0) + 1e-8
    return int(np.argmax(spread / sd))


def explorer_data(exp: Experiment, tasks: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
                  *, top: int = 3, n_examples: int = 200, sample_seed: int = 0) -> list[Selection]:
    """Everything the static explorer shows, per (task, seed) of the profile."""
    selections = []
    for task in tasks or exp.profile.tasks:
        enc, _ = subset(exp.encoded(task, "test"), n_examples, sample_seed)
        names = list(exp.task(task).label_names)
        labels = np.asarray(enc.labels)
        for seed in seeds or exp.profile.seeds:
            scores = exp.neuron_scores(task, seed).float().numpy()
            neurons = top_neurons(scores, top)
            values = neuron_values(exp, task, seed, neurons, enc)
            positions = [most_separating_position(values[:, j, :], labels) for j in range(len(neurons))]
            shown = np.stack([values[:, j, p] for j, p in enumerate(positions)], axis=1) if neurons else \
                np.zeros((len(enc), 0), dtype=np.float32)
            selections.append(Selection(task, int(seed), scores, neurons, positions, shown,
                                        [names[i] for i in labels], names))
    return selections


def _titles(sel: Selection) -> list[str]:
    from .intervals import majority_rate

    no_skill = majority_rate(np.asarray(sel.labels))  # a constant neuron's predictivity on these examples
    heat = (f"{sel.task}, seed {sel.seed}: predictivity of every FFN neuron (layer x neuron); "
            f"no-skill reference {no_skill:.3f}")
    return [heat] + [f"#{r + 1}: layer {layer}, neuron {n}<br>pred {sel.scores[layer, n]:.3f}, at p{p}"
                     for r, ((layer, n), p) in enumerate(zip(sel.neurons, sel.positions))]


def explorer_figure(selections: Sequence[Selection], *, height: int = 720):
    """A plotly Figure: heatmap on top, the top neurons' activation histograms per class below, and a
    dropdown over (task, seed) that switches which traces are visible and the panel titles."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not selections:
        raise ValueError("no (task, seed) to show")
    top = max(len(s.neurons) for s in selections) or 1
    fig = make_subplots(rows=2, cols=top, specs=[[{"colspan": top}] + [None] * (top - 1), [{}] * top],
                        row_heights=[0.5, 0.5], vertical_spacing=0.16, horizontal_spacing=0.06,
                        subplot_titles=[" "] * (1 + top))
    owner: list[int] = []  # which selection each trace belongs to
    for k, sel in enumerate(selections):
        first = k == 0
        vmax = max(0.55, float(sel.scores.max()))
        fig.add_trace(go.Heatmap(z=sel.scores.astype(np.float32), zmin=0.5, zmax=vmax, colorscale="Magma",
                                 colorbar={"title": {"text": "predictivity"}, "len": 0.42, "y": 0.79},
                                 hovertemplate="layer %{y}, neuron %{x}<br>predictivity %{z:.3f}<extra></extra>",
                                 name=f"{sel.key}: predictivity", visible=first), row=1, col=1)
        owner.append(k)
        if sel.neurons:
            fig.add_trace(go.Scatter(x=[n for _, n in sel.neurons], y=[layer for layer, _ in sel.neurons],
                                     mode="markers+text", text=[f"#{r + 1}" for r in range(len(sel.neurons))],
                                     textposition="top center", textfont={"color": "#00b4d8"},
                                     marker={"symbol": "circle-open", "size": 14, "color": "#00b4d8",
                                             "line": {"width": 2}},
                                     name=f"{sel.key}: top neurons", showlegend=False, visible=first,
                                     hoverinfo="skip"), row=1, col=1)
            owner.append(k)
        labels = np.asarray(sel.labels)
        for j in range(len(sel.neurons)):
            for c, name in enumerate(sel.label_names):
                values = sel.activations[labels == name, j]
                fig.add_trace(go.Histogram(x=values.astype(np.float32), name=name, legendgroup=name,
                                           marker_color=CLASS_COLOURS[c % len(CLASS_COLOURS)], opacity=0.6,
                                           nbinsx=30, showlegend=(j == 0), visible=first,
                                           hovertemplate=f"{name}<br>activation %{{x}}<br>examples %{{y}}<extra></extra>"),
                              row=2, col=j + 1)
                owner.append(k)
    base = [a.to_plotly_json() for a in fig.layout.annotations]  # subplot titles: heatmap, then one per column

    def annotations(sel: Selection) -> list[dict]:
        texts = _titles(sel)
        return [{**a, "text": texts[i] if i < len(texts) else "", "font": {"size": 14 if i == 0 else 12}}
                for i, a in enumerate(base)]

    buttons = []
    for k, sel in enumerate(selections):
        buttons.append({"label": sel.key, "method": "update",
                        "args": [{"visible": [o == k for o in owner]}, {"annotations": annotations(sel)}]})
    fig.update_layout(
        annotations=annotations(selections[0]), height=height, barmode="overlay", template="plotly_white",
        margin={"l": 60, "r": 30, "t": 90, "b": 60},
        legend={"title": {"text": "class"}, "orientation": "h", "x": 1.0, "xanchor": "right", "y": -0.08,
                "yanchor": "top"},
        updatemenus=[{"buttons": buttons, "direction": "down", "showactive": True, "active": 0,
                      "x": 0.0, "xanchor": "left", "y": 1.13, "yanchor": "bottom", "pad": {"r": 4, "t": 2}}])
    fig.update_xaxes(title_text="neuron", row=1, col=1)
    fig.update_yaxes(title_text="layer", row=1, col=1, dtick=1)
    for j in range(top):
        fig.update_xaxes(title_text="activation", row=2, col=j + 1)
        fig.update_yaxes(title_text="examples" if j == 0 else None, row=2, col=j + 1)
    return fig


def explorer_html(fig, plotly_js: str | None = None, div_id: str = DIV_ID) -> str:
    """The figure as an HTML fragment that works with no network and no kernel: plotly.js inlined, or
    loaded from `plotly_js`, a relative URL of a local copy (`BOOK_PLOTLY_JS` in the book)."""
    if plotly_js is not None and (not plotly_js.endswith(".js") or "://" in plotly_js or plotly_js.startswith("//")):
        raise ValueError(f"plotly_js must be a relative URL of a local .js file, got {plotly_js!r}")
    return fig.to_html(include_plotlyjs=plotly_js or True, full_html=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})
