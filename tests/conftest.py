"""Shared test fixtures."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

# One thread: on a 2-core machine where another process holds a core, two torch threads
# wait on each other and a test can run tens of times slower.
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def facegan_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point FACEGAN_CACHE at a temporary folder so tests never touch the user's cache."""
    cache = tmp_path_factory.mktemp("facegan-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACEGAN_CACHE", str(cache))
        yield cache
