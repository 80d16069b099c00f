"""Shared test fixtures."""

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def facegan_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point FACEGAN_CACHE at a temporary folder so tests never touch the user's cache."""
    cache = tmp_path_factory.mktemp("facegan-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACEGAN_CACHE", str(cache))
        yield cache
