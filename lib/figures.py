"""Figures of the book that are drawn, not computed: the method figure on "The method in formulas".

    python -m lib.figures method book/figures/method.svg

The drawing is deterministic (fixed SVG hash salt, no date in the metadata), so the committed file
can be checked against a fresh run (tests/test_teaching.py does). Symbols follow the notation table
of book/method.md: soft prompt P = (P_1, ..., P_m), input x_1..x_n, FFN activation a_{l,p,n} of
neuron n in layer l at prompt position p, verbalizer v(y).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

FIGURES = ("method",)

# colours shared with the text of book/method.md (prompt = orange, input = blue, read-out = green)
PROMPT, MASK, INPUT, FFN, READ, GREY = "#f4a261", "#e76f51", "#8ecae6", "#ffffff", "#2a9d8f", "#6c757d"


def _box(ax, x: float, y: float, w: float, h: float, text: str, face: str, *, size: float = 9,
         edge: str = "#333333", weight: str = "normal", color: str = "black", lw: float = 1.0) -> None:
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08", fc=face, ec=edge, lw=lw))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, weight=weight, color=color)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], *, color: str = "#333333",
           style: str = "-|>", lw: float = 1.2, ls: str = "-") -> None:
    ax.annotate("", xy=end, xytext=start,
                arrowprops={"arrowstyle": style, "color": color, "lw": lw, "linestyle": ls, "shrinkA": 0, "shrinkB": 0})


def _tokens(ax, x0: float, y: float, labels: Sequence[tuple[str, str]], w: float = 0.62, gap: float = 0.08) -> list[float]:
    """Token boxes left to right; returns their centres."""
    centres = []
    for i, (label, face) in enumerate(labels):
        x = x0 + i * (w + gap)
        _box(ax, x, y, w, 0.5, label, face, size=7.0 if len(label) > 4 and "$" not in label else 8.5)
        centres.append(x + w / 2)
    return centres


def _stack(ax, x: float, y: float, w: float, label: str, centres: Sequence[float], read: Sequence[int],
           *, layers: int = 3, names: bool = True) -> float:
    """A stack of transformer layers (attention + FFN); FFN neurons drawn as dots at the read positions.
    Returns the y of the stack's top edge."""
    from matplotlib.patches import Circle

    h, gap = 0.62, 0.18
    for k in range(layers):
        yy = y + k * (h + gap)
        _box(ax, x, yy, w, h, "", "#f1f3f5", edge="#adb5bd")
        if names:
            name = "layer $L$" if k == layers - 1 else f"layer {k + 1}"
            ax.text(x - 0.1, yy + h / 2, name, ha="right", va="center", fontsize=8, color=GREY)
        ax.text(x + 0.08, yy + h - 0.1, "attention → FFN", ha="left", va="top", fontsize=7, color=GREY)
        for i in read:
            for j, dx in enumerate((-0.13, 0.0, 0.13)):
                ax.add_patch(Circle((centres[i] + dx, yy + 0.19), 0.045, fc=READ if j != 1 else FFN, ec=READ, lw=1.0))
    top = y + layers * (h + gap) - gap
    if label:  # inside the top layer's box, right-aligned, clear of the read-out arrow
        ax.text(x + w - 0.1, top - h / 2, label, ha="right", va="center", fontsize=9, weight="bold")
    return top


def _span(ax, left: float, right: float, y: float, text: str, color: str) -> None:
    ax.plot([left, right], [y, y], color=color, lw=1.5, solid_capstyle="butt")
    ax.text((left + right) / 2, y - 0.12, text, ha="center", va="top", fontsize=8, color=color)


def draw_method(path: str | Path) -> Path:
    """Draw the method figure (encoder with `<mask>` slot, T5 encoder-decoder) and write it to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Start from Matplotlib's defaults: a notebook (or a test) that ran seaborn's theme in this process
    # must not change the drawing, or the committed SVG would depend on what ran before.
    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        matplotlib.rcParams.update({"svg.hashsalt": "skill-neuron-method", "font.family": "DejaVu Sans",
                                    "mathtext.fontset": "dejavusans", "svg.fonttype": "path"})
        fig, axes = plt.subplots(2, 1, figsize=(8.6, 9.6), gridspec_kw={"hspace": 0.12})
        for ax in axes:
            ax.set_xlim(-0.2, 8.4)
            ax.set_ylim(-1.4, 3.95)
            ax.axis("off")

        # (a) masked LM / tied encoder (RoBERTa, BERT, MiniLM)
        ax = axes[0]
        ax.set_title("(a) RoBERTa / BERT / MiniLM: label read at the <mask> slot", fontsize=10.5, loc="left")
        toks = [("<mask>", MASK), ("$P_2$", PROMPT), ("$P_3$", PROMPT), ("…", PROMPT), ("$P_m$", PROMPT),
                ("$x_1$", INPUT), ("$x_2$", INPUT), ("…", INPUT), ("$x_T$", INPUT)]
        c = _tokens(ax, 0.95, -0.6, toks, w=0.72, gap=0.06)
        _span(ax, c[0] - 0.36, c[4] + 0.36, -0.78, "soft prompt $P$ ($m$ trained vectors;\nslot 1 holds <mask>)", MASK)
        _span(ax, c[5] - 0.36, c[8] + 0.36, -0.78, "input $x$ (frozen word embeddings)", "#219ebc")
        top = _stack(ax, 0.85, 0.25, 7.3, "frozen encoder", c, read=[0, 1, 2, 4])
        ax.text(8.05, 0.56, "dots: FFN neurons $a_{l,p,n}$\nat the prompt positions $p$", ha="right", va="center",
                fontsize=8, color=READ)
        for i in (0, 2, 6):
            _arrow(ax, (c[i], -0.1), (c[i], 0.23))
        _arrow(ax, (c[0], top + 0.02), (c[0], top + 0.48), color=MASK)
        _box(ax, 0.35, top + 0.5, 2.9, 0.55, "$z_y = h_{\\mathrm{mask}}^{\\top} e_{v(y)}$ per label $y$", "#ffe8d6",
             size=8.5, edge=MASK)
        _arrow(ax, (3.27, top + 0.775), (3.75, top + 0.775), color=READ)
        _box(ax, 3.77, top + 0.5, 4.3, 0.55, "verbalizer $v$: negative / positive → $\\hat y$", "#d8f3dc",
             size=8.5, edge=READ)

        # (b) T5 encoder-decoder
        ax = axes[1]
        ax.set_title("(b) T5: label word scored at the decoder's first step", fontsize=10.5, loc="left")
        toks = [("$P_1$", PROMPT), ("$P_2$", PROMPT), ("…", PROMPT), ("$P_m$", PROMPT), ("$x_1$", INPUT),
                ("$x_2$", INPUT), ("…", INPUT), ("$x_T$", INPUT)]
        c = _tokens(ax, 0.55, -0.6, toks, w=0.5, gap=0.06)
        _span(ax, c[0] - 0.25, c[3] + 0.25, -0.78, "soft prompt $P$", MASK)
        _span(ax, c[4] - 0.25, c[7] + 0.25, -0.78, "input $x$", "#219ebc")
        top = _stack(ax, 0.45, 0.25, 4.55, "frozen encoder", c, read=[0, 1, 3])
        ax.text(4.9, 0.56, "dots: $a_{l,p,n}$ at\nthe prompt positions", ha="right", va="center", fontsize=8,
                color=READ)
        for i in (0, 5):
            _arrow(ax, (c[i], -0.1), (c[i], 0.23))
        dx = 6.1  # the decoder: one step
        _box(ax, dx, -0.6, 1.5, 0.5, "<start>", "#e9ecef", size=8.5)
        _stack(ax, dx - 0.05, 0.25, 1.6, "", [dx + 0.75], read=[], names=False)
        ax.text(dx + 0.75, -0.7, "frozen decoder,\nfirst step", ha="center", va="top", fontsize=9, weight="bold")
        _arrow(ax, (dx + 0.75, -0.1), (dx + 0.75, 0.23))
        _arrow(ax, (5.02, 1.05), (dx - 0.07, 1.05), color=GREY, ls="--")
        ax.text((5.02 + dx) / 2, 1.12, "cross-\nattention", fontsize=7, color=GREY, ha="center", va="bottom")
        _arrow(ax, (dx + 0.75, top + 0.02), (dx + 0.75, top + 0.48), color=MASK)
        _box(ax, 3.6, top + 0.5, 4.6, 0.55, "LM head at step 1, verbalizer ids → $\\hat y$", "#d8f3dc",
             size=8.5, edge=READ)

        fig.text(0.5, 0.07, "Only the orange prompt vectors are trained; everything grey is frozen.\nGreen dots: FFN "
                 "activations after the non-linearity, where predictivity is measured.", ha="center", va="top",
                 fontsize=9, color="#333333")
        kwargs = {"metadata": {"Date": None}} if path.suffix == ".svg" else {"dpi": 150}
        fig.savefig(path, bbox_inches="tight", **kwargs)
        plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] not in FIGURES:
        print(f"usage: python -m lib.figures {{{'|'.join(FIGURES)}}} OUTPUT.svg", file=sys.stderr)
        return 2
    print(draw_method(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
