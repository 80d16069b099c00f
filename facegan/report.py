"""The report: execute the notebook with papermill and export it as HTML."""

from __future__ import annotations

import ast
from pathlib import Path

from facegan.config import PARAMETER_ALIASES
from facegan.errors import FaceGanError

NOTEBOOK = Path(__file__).resolve().parent.parent / "dlnd_face_generation.ipynb"


def parse_value(text: str) -> object:
    """A command-line parameter as a Python value: 5 -> 5, None -> None, cpu -> 'cpu'."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def make_report(parameters: dict[str, str], out_dir: str | Path = "reports") -> Path:
    """Run the notebook with the given parameters; returns the path of the HTML report."""
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    if not NOTEBOOK.exists():
        raise FaceGanError(f"the notebook {NOTEBOOK.name} is missing beside the facegan package.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / NOTEBOOK.name
    # A parameter's earlier name still reaches it.
    values = {
        PARAMETER_ALIASES.get(name, name): parse_value(text) for name, text in parameters.items()
    }
    try:
        papermill.execute_notebook(
            str(NOTEBOOK),
            str(executed),
            parameters=values,
            cwd=str(NOTEBOOK.parent),
            progress_bar=True,
        )
    except papermill.PapermillExecutionError as err:
        raise FaceGanError(
            f"the notebook failed in cell {err.exec_count}: {err.ename}: {err.evalue}. "
            f"The partly executed notebook is {executed}."
        ) from err
    html, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    report = executed.with_suffix(".html")
    report.write_text(html, encoding="utf-8")
    return report
