"""The run lock: one process trains in a run folder at a time.

A second run in the same folder would overwrite the first's checkpoints and mix its rows into
the first's history; the lock refuses it and names the process that holds the folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

try:
    import fcntl
except ModuleNotFoundError:  # Windows has no flock: runs there are not locked
    fcntl = None

from facegan.checkpoint import write_error
from facegan.errors import FaceGanError


class RunInUseError(FaceGanError):
    """Another process is training in the run folder."""


class RunLock:
    """An exclusive lock on a run folder, held while one process trains in it.

    It is flock on the folder's .lock file, which holds the holder's PID for the refusal
    message. The kernel drops a flock when its process ends, however it ends, so a killed
    run leaves no stale lock. The holder removes the file before unlocking it; whoever
    locks a file that was meanwhile removed tries again on a new one.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / ".lock"
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> None:
        """Take the lock, making the folder if need be; RunInUseError if another run holds it."""
        if fcntl is None:
            return
        while not self.held:
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                # Appending never erases a holder's PID; the file stays open while held.
                file = open(self.path, "a+")  # noqa: SIM115
            except OSError as err:
                raise write_error(self.path, err) from err
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                file.seek(0)
                holder = file.read().strip()
                file.close()
                raise RunInUseError(
                    f"{self.run_dir} is in use by another run (process "
                    f"{holder or 'unknown'}): wait for it to end or stop it, or train "
                    "in another folder (--out)."
                ) from None
            if self._same_file(file):
                self._file = file
            else:
                file.close()
        try:
            self._file.truncate(0)
            self._file.write(f"{os.getpid()}\n")
            self._file.flush()
        except OSError as err:
            self.release()
            raise write_error(self.path, err) from err

    def _same_file(self, file: IO[str]) -> bool:
        """Whether file is still the one at self.path (the last holder did not remove it)."""
        try:
            return os.stat(self.path).st_ino == os.fstat(file.fileno()).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        """Remove the lock file and unlock it; nothing if the lock is not held."""
        if self._file is not None:
            self.path.unlink(missing_ok=True)
            self._file.close()
            self._file = None
