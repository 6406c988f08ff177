"""A notebook's parameters: overrides given as JSON, the cells that assign them, and papermill's injected cell.

Light on purpose (standard library only): the runner's command line imports it before it knows whether
it will do any work, so `python -m lib.runner --help` answers without loading torch.

papermill executes a template by inserting a cell of its own (tagged `injected-parameters`, starting with
`# Parameters`) right after the template's `parameters` cell. Left in an executed notebook, that hidden
cell re-assigns every value after the visible one, so a reader who edits the visible cell and runs the
notebook where it lies would be silently ignored. `merge_injected_parameters` folds the injected values
into the visible cell and drops the injected one: the cell a reader sees is the one that ran and the one
that counts.
"""
from __future__ import annotations

import ast
import copy
import json
import re
from typing import Any, Mapping

from .errors import ConfigError

# papermill's Python translator starts the cell it injects with this comment (papermill.translators).
INJECTED_MARK = "# Parameters\n"
INJECTED_TAG = "injected-parameters"
PARAMETERS_TAG = "parameters"
# First line of a visible parameters cell that holds the values a run used (never INJECTED_MARK: a
# later papermill run over the executed notebook must still tell its own injected cell from this one).
MERGED_HEADER = "# The values this notebook ran with. Edit them and run all cells to re-run it with yours."
_ASSIGNED_NAME = re.compile(r"^([A-Za-z_]\w*)\s*(?::[^=]*)?=(?!=)")


def parse_overrides(value: Mapping[str, Any] | str | None, name: str = "overrides") -> dict[str, Any]:
    """A notebook parameter of overrides as a dict.

    The runner passes dicts, but `papermill -p overrides '{"seeds": [0]}'` passes the JSON text as a
    string, so both are accepted; anything else is one clear `ConfigError`.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    if isinstance(value, Mapping):
        return copy.deepcopy(dict(value))
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a dict or a JSON object string, got {type(value).__name__}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name} must be a JSON object, e.g. {name}='{{\"seeds\": [0]}}' "
                          f"({exc.msg} at character {exc.pos} of {value!r})") from None
    if not isinstance(parsed, dict):
        raise ConfigError(f"{name} must be a JSON object, e.g. {name}='{{\"seeds\": [0]}}', got {value!r}")
    return parsed


def assignments(source: str) -> dict[str, str] | None:
    """name -> value (source text) of a cell of plain assignments (a parameters cell); None for any other cell."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        else:
            return None
        if node.value is None or not all(isinstance(t, ast.Name) for t in targets):
            return None
        for target in targets:
            out[target.id] = ast.get_source_segment(source, node.value) or "..."
    return out


def merged_source(declared: str, injected: str) -> str:
    """The visible parameters cell with papermill's values written into it.

    Each line of `declared` that assigns a name papermill set is replaced by papermill's value for it
    (the template's trailing comment, which explains the parameter, is kept); the other lines stay.
    Names papermill set that the template does not declare are appended (the runner refuses them
    earlier; a hand-run papermill may not)."""
    values = assignments(injected) or {}
    lines, seen = [], set()
    for line in declared.splitlines():
        if line.strip() == MERGED_HEADER:
            continue
        match = _ASSIGNED_NAME.match(line)
        name = match.group(1) if match else None
        if name in values:
            comment = line[line.index("  #"):] if "  #" in line else ""
            lines.append(f"{name} = {values[name]}{comment}")
            seen.add(name)
        else:
            lines.append(line)
    lines += [f"{name} = {value}" for name, value in values.items() if name not in seen]
    return "\n".join([MERGED_HEADER, *lines])


def merge_injected_parameters(nb: Any) -> bool:
    """Fold papermill's injected cell into the visible `parameters` cell of an executed notebook (in place).

    Returns whether there was an injected cell. The visible cell keeps its tags (papermill can still
    parametrize the executed notebook) and gets the injected cell's outputs, if any."""
    cells = nb.cells
    injected = [i for i, c in enumerate(cells) if INJECTED_TAG in c.metadata.get("tags", [])]
    if not injected:
        return False
    i = injected[0]
    declared = next((j for j in range(i - 1, -1, -1) if PARAMETERS_TAG in cells[j].metadata.get("tags", [])), None)
    if declared is None:  # a template without a parameters cell: papermill put its cell first; keep it visible
        cells[i].metadata["tags"] = [t for t in cells[i].metadata["tags"] if t != INJECTED_TAG] + [PARAMETERS_TAG]
        cells[i].source = merged_source("", cells[i].source)
        return True
    cells[declared].source = merged_source(cells[declared].source, cells[i].source)
    del cells[i]
    return True
