"""The learner's notebook: the solution notebook with each solution region replaced by its stub.

The solution notebook marks what a learner writes as nbgrader does, inside a code cell:

    ### BEGIN SOLUTION
    from facegan.models import Discriminator
    ### END SOLUTION

and gives that region's stub in the cell right after it: a raw cell in Python format, tagged
"stub", holding a skeleton whose body raises NotImplementedError with a one-line hint. Raw
cells never run, and the HTML report leaves out raw cells in Python format, so the solution
notebook runs and reads as if the stubs were not there. The starter keeps every other cell
and all the text, puts each stub in place of its region (indented like the BEGIN line),
drops the stub cells and clears the outputs.

    python -m facegan.starter    (make starter) writes dlnd_face_generation_starter.ipynb
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from facegan.errors import FaceGanError

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "dlnd_face_generation.ipynb"
STARTER = ROOT / "dlnd_face_generation_starter.ipynb"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB_TAG = "stub"
STUB_FORMAT = "text/x-python"  # Jupyter's "Python" format for raw cells; HTML leaves it out


class StarterError(FaceGanError):
    """The solution notebook's regions and stubs do not pair up."""


def is_stub(cell: NotebookNode) -> bool:
    return cell.cell_type == "raw" and STUB_TAG in cell.metadata.get("tags", [])


def has_region(cell: NotebookNode) -> bool:
    lines = cell.source.splitlines()
    return cell.cell_type == "code" and any(line.strip() in (BEGIN, END) for line in lines)


def make_starter(solution: NotebookNode) -> NotebookNode:
    """The learner's edition of a solution notebook; the solution itself is left unchanged."""
    starter = copy.deepcopy(solution)
    starter.cells = []
    waiting = None  # a cell whose region awaits the stub in the next cell, and its number
    for number, cell in enumerate(copy.deepcopy(solution.cells)):
        if is_stub(cell):
            if waiting is None:
                raise StarterError(
                    f"cell {number} is a stub, but the cell before it holds no solution region: "
                    f"move the stub right after the code cell whose {BEGIN} region it replaces."
                )
            _check_format(cell, number)
            waiting[0].source = replace_region(waiting[0].source, cell.source, waiting[1])
            waiting = None
            continue
        _check_answered(waiting)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            waiting = (cell, number) if has_region(cell) else None
        starter.cells.append(cell)
    _check_answered(waiting)
    return starter


def replace_region(source: str, stub: str, number: int) -> str:
    """source with its one solution region, marker lines included, replaced by stub."""
    lines = source.splitlines()
    begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise StarterError(
            f"cell {number} must hold one solution region, a {BEGIN} line and then an {END} "
            f"line; it has {len(begins)} and {len(ends)}. Put a second region in its own cell."
        )
    begin = lines[begins[0]]
    indent = begin[: len(begin) - len(begin.lstrip())]
    stub_lines = [indent + line if line else line for line in stub.splitlines()]
    return "\n".join(lines[: begins[0]] + stub_lines + lines[ends[0] + 1 :])


def _check_answered(waiting: tuple[NotebookNode, int] | None) -> None:
    if waiting is not None:
        raise StarterError(
            f"cell {waiting[1]} holds a solution region but no stub follows it: add a raw "
            f"cell tagged {STUB_TAG!r} right after it, holding what the learner starts from."
        )


def _check_format(cell: NotebookNode, number: int) -> None:
    if cell.metadata.get("raw_mimetype") != STUB_FORMAT:
        raise StarterError(
            f"the stub in cell {number} is not in raw format {STUB_FORMAT!r}, so the report "
            "would show it: set its raw_mimetype to that (Jupyter's raw cell format Python)."
        )


def render(notebook: NotebookNode) -> str:
    """A notebook as the text of its file, as nbformat.write writes it."""
    return nbformat.writes(notebook) + "\n"


def write_starter(solution: Path = SOLUTION, starter: Path = STARTER) -> Path:
    """Write the starter of the solution notebook at solution; returns its path."""
    try:
        notebook = nbformat.read(solution, as_version=4)
    except OSError as err:
        raise StarterError(
            f"cannot read the solution notebook {solution}: {err.strerror}."
        ) from err
    starter.write_text(render(make_starter(notebook)), encoding="utf-8")
    return starter


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facegan.starter", description=__doc__)
    parser.add_argument("--solution", type=Path, default=SOLUTION, help="the solution notebook")
    parser.add_argument("--out", type=Path, default=STARTER, help="the starter to write")
    args = parser.parse_args(argv)
    try:
        path = write_starter(args.solution, args.out)
    except FaceGanError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"starter: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
