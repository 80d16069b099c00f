"""The report: execute the notebook with papermill and export it as HTML."""

from __future__ import annotations

import ast
import difflib
import json
import types
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import get_type_hints

from facegan.config import PARAMETER_ALIASES, TrainConfig, config_from_parameters
from facegan.errors import ConfigError, FaceGanError

NOTEBOOK = Path(__file__).resolve().parent.parent / "dlnd_face_generation.ipynb"


def parse_value(text: str) -> object:
    """A command-line parameter as a Python value: 5 -> 5, None -> None, cpu -> 'cpu'."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def notebook_parameters(notebook: Path) -> dict[str, object]:
    """The names and values the notebook's parameters cell assigns (Ellipsis: not a literal)."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not tagged:
        raise ConfigError(
            f"{notebook.name} has no cell tagged parameters, so it takes no -p parameters."
        )
    source = "".join(tagged[0]["source"])
    found: dict[str, object] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                found[node.targets[0].id] = ...
    return found


# What each type of parameter takes, in words for the refusal.
KINDS = {bool: "True or False", int: "a whole number", float: "a number", str: "text"}


def check_parameters(parameters: Mapping[str, str], notebook: Path) -> dict[str, object]:
    """The -p parameters as the notebook's Python values, checked before anything runs.

    The names are those of the notebook's parameters cell (TrainConfig's fields upper-cased,
    and a few of the report's own); a parameter's earlier name still reaches it. The type is
    the TrainConfig field's, else that of the cell's value. ConfigError names an unknown
    parameter with the closest known name, a value of the wrong type, or a setting
    TrainConfig refuses.
    """
    defaults = notebook_parameters(notebook)
    types_of = get_type_hints(TrainConfig)
    hints = {each.name.upper(): types_of[each.name] for each in fields(TrainConfig)}
    values = {}
    for given, text in parameters.items():
        name = PARAMETER_ALIASES.get(given, given)
        if name not in defaults:
            close = difflib.get_close_matches(name.upper(), list(defaults), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(
                f"{notebook.name} has no parameter {given}{hint}: its parameters are the names "
                "in its parameters cell, TrainConfig's settings upper-cased "
                "(python -m facegan train --help explains each)."
            )
        values[name] = _typed(name, text, hints.get(name, type(defaults[name])))
    settings = {k: v for k, v in defaults.items() if v is not ...} | values
    config_from_parameters(settings)  # refuses a value out of range, as the notebook would
    return values


def _typed(name: str, text: str, kind: object) -> object:
    """text as a value of kind (a type, or one type | None); ConfigError if it is not one."""
    value = parse_value(text)
    optional = isinstance(kind, types.UnionType) and type(None) in kind.__args__
    if optional:
        (kind,) = (arg for arg in kind.__args__ if arg is not type(None))
    if kind not in KINDS or (optional and value is None):
        return value  # a report parameter whose cell value is None takes any value
    if kind is str:
        return value if isinstance(value, str) else text  # -p OUT 2024 is the folder 2024
    whole = isinstance(value, int) and not isinstance(value, bool)
    if kind is bool and isinstance(value, bool) or kind is int and whole:
        return value
    if kind is float and (whole or isinstance(value, float)):
        return float(value)
    raise ConfigError(
        f"parameter {name} takes {KINDS[kind]}{' or None' if optional else ''}, got {text!r}."
    )


def make_report(
    parameters: dict[str, str],
    out_dir: str | Path = "reports",
    notebook: str | Path | None = None,
) -> Path:
    """Run the notebook with the given parameters; returns the path of the HTML report.

    notebook is NOTEBOOK unless given (a learner's starter, say). It runs in its own folder,
    as Jupyter runs it, and its executed copy and report are named after it.
    """
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    notebook = NOTEBOOK if notebook is None else Path(notebook).resolve()
    if not notebook.is_file():
        raise FaceGanError(
            f"the notebook {notebook} does not exist: give --notebook the path of an .ipynb "
            f"file (the default is {NOTEBOOK.name}, beside the facegan package)."
        )
    values = check_parameters(parameters, notebook)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / notebook.name
    try:
        papermill.execute_notebook(
            str(notebook),
            str(executed),
            parameters=values,
            cwd=str(notebook.parent),
            progress_bar=True,
        )
    except papermill.PapermillExecutionError as err:
        raise FaceGanError(
            f"the notebook failed in cell {err.exec_count}: {err.ename}: "
            f"{err.evalue.rstrip('.')}. "
            f"The partly executed notebook is {executed}."
        ) from err
    html, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    report = executed.with_suffix(".html")
    report.write_text(html, encoding="utf-8")
    return report
