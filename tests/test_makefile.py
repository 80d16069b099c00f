"""The Makefile's set-up: a disk without room for .venv is refused before anything is written."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_disk_without_room_for_the_venv_is_refused_in_one_sentence(tmp_path):
    venv = tmp_path / "venv"
    result = subprocess.run(
        ["make", "-C", str(ROOT), f"{venv}/installed"]
        + [f"VENV={venv}", "VENV_GIB=1000000000", f"PYTHON={sys.executable}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert f"a new {venv} needs about 1000000000 GiB free in {tmp_path}" in result.stderr
    assert "Free some space, or set VENV to a folder on a roomier disk" in result.stderr
    assert "Traceback" not in result.stderr
    assert not venv.exists()
