"""The results files one generated region reads, and the error a page or a results file raises."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from facegan.errors import FaceGanError


class DocsError(FaceGanError):
    """A page or a results file does not fit the generator."""


class Sources:
    """The results files one region reads, remembered in order for its sources list."""

    def __init__(self, results: Path, page: Path) -> None:
        self.results = results
        self.page = page
        self.used: list[str] = []

    def __getitem__(self, name: str) -> dict[str, Any]:
        path = self.results / f"{name}.json"
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            raise DocsError(
                f"{path.name} is missing from {self.results}: run the benchmark that writes it, "
                "or remove the region that reads it"
            ) from None
        except (OSError, ValueError) as error:
            raise DocsError(f"{path} is not readable JSON ({error}): restore it from git") from None
        if name not in self.used:
            self.used.append(name)
        return record

    def link(self, name: str) -> str:
        """A Markdown link to a results file, relative to the page being written."""
        target = os.path.relpath(self.results / f"{name}.json", self.page.parent)
        return f"[{name}.json]({Path(target).as_posix()})"
