"""Rewrite the figures in README.md and docs/*.md from benchmarks/results/*.json.

Run from the repository root:

    python -m benchmarks.docs [--check]

A generated region sits between `<!-- generated: NAME -->` and `<!-- end generated -->`, each
marker on its own line; NAME picks the table that fills it. Everything outside the regions
is hand-written and left alone. Each table ends with its sources: the results file, the command,
the commit, the machine and the torch version that file records, or "not recorded" where it
records none. With --check nothing is written, and the exit code is 1 when a file is out of date.

The tables of each page live in the module named after it (readme, measurements, metrics, celeba,
distributed); formats holds the rules for figures that every page shares.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

# Importing the pages' modules registers their tables by region name.
from benchmarks.docs import celeba, distributed, measurements, metrics, readme  # noqa: F401
from benchmarks.docs.formats import source_line
from benchmarks.docs.registry import TABLES, UNLISTED
from benchmarks.docs.sources import DocsError, Sources
from facegan.errors import FaceGanError

__all__ = ["DocsError", "main", "pages", "regenerate", "render"]
REPO = Path(__file__).resolve().parents[2]
REGION = re.compile(
    r"^<!-- generated: (?P<name>[\w-]+) -->\n(?P<body>.*?)^<!-- end generated -->$",
    re.DOTALL | re.MULTILINE,
)
START = re.compile(r"^<!-- generated: ", re.MULTILINE)


def render(text: str, results: Path, page: Path) -> str:
    """The page's text with every generated region filled afresh from the results folder."""
    regions = list(REGION.finditer(text))
    if len(START.findall(text)) != len(regions):
        raise DocsError(
            f"{page.name}: a `<!-- generated: NAME -->` line has no `<!-- end generated -->` line "
            "after it, or one region sits inside another: close each region once"
        )

    def fill(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in TABLES:
            raise DocsError(
                f"{page.name}: no table is named {name!r}; "
                f"the names are {', '.join(sorted(TABLES))}"
            )
        sources = Sources(results, page)
        try:
            body = TABLES[name](sources)
        except KeyError as missing:
            raise DocsError(
                f"{page.name}: table {name!r} needs {missing}, which "
                f"{' or '.join(n + '.json' for n in sources.used)} lacks: rerun its benchmark"
            ) from None
        if name not in UNLISTED:
            listed = "\n".join(source_line(sources, used) for used in sources.used)
            body += f"\n\nSources:\n\n{listed}"
        return f"<!-- generated: {name} -->\n{body}\n<!-- end generated -->"

    return REGION.sub(fill, text)


def pages(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def regenerate(root: Path, *, write: bool = True) -> list[Path]:
    """Fill every page's regions from root's results; return the pages that changed."""
    results = root / "benchmarks" / "results"
    changed = []
    for page in pages(root):
        text = page.read_text()
        fresh = render(text, results, page)
        if fresh != text:
            changed.append(page)
            if write:
                page.write_text(fresh)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.docs", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    try:
        changed = regenerate(REPO, write=not args.check)
    except FaceGanError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for page in changed:
        verb = "out of date" if args.check else "rewritten"
        print(f"{page.relative_to(REPO).as_posix()}: {verb}")
    if not changed:
        print("docs: up to date")
    return 1 if args.check and changed else 0
