"""Launching the CLI for the kill tests: as a new program, or forked from a warm interpreter.

A fresh `python -m facegan` spends seconds importing torch (and torch._dynamo, which the
first optimizer imports) before a tiny run trains for one. Launcher imports all that once
in a server process that forks a child per launch; the child runs facegan.__main__.main(argv)
with its output in files. It is a real process, which SIGKILL ends like any other, started
in a fraction of the time, so that tests and benchmarks can afford many kills.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def program_env() -> dict[str, str]:
    """The environment of a launch. One thread: tiny networks gain nothing from more, and a
    thread pool spinning on a busy 2-core machine makes them many times slower."""
    return os.environ | {"OMP_NUM_THREADS": "1"}


def program(args: list[str]) -> subprocess.Popen:
    """Start `python -m facegan ARGS` as a new program."""
    return subprocess.Popen(
        [sys.executable, "-m", "facegan", *args],
        cwd=REPO,
        env=program_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class Launcher:
    """Forks launches of the CLI from a server that has imported it; a context manager."""

    def __enter__(self) -> Launcher:
        self._logs = tempfile.TemporaryDirectory(prefix="facegan-launches-")
        self._launches = 0
        self._server = subprocess.Popen(
            [sys.executable, "-c", "from tests.support import launcher; launcher.serve()"],
            cwd=REPO,
            env=program_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert json.loads(self._server.stdout.readline()) == "ready"
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.stdin.close()  # the server's loop ends at end of input
        self._server.wait(timeout=60)
        self._logs.cleanup()

    def ask(self, request: dict) -> object:
        self._server.stdin.write(json.dumps(request) + "\n")
        self._server.stdin.flush()
        return json.loads(self._server.stdout.readline())

    def start(self, args: list[str]) -> ForkedProcess:
        """Start `python -m facegan ARGS` as a fork of the server."""
        self._launches += 1
        log = Path(self._logs.name) / f"launch-{self._launches}"
        return ForkedProcess(self, self.ask({"argv": args, "log": str(log)}), log)


class ForkedProcess:
    """What the kill tests use of subprocess.Popen, for a launch forked by a Launcher."""

    def __init__(self, launcher: Launcher, pid: int, log: Path) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._launcher = launcher
        self._log = log

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._launcher.ask({"poll": self.pid})
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.005)
        return self.returncode

    def kill(self) -> None:
        # Not reaped until polled, so the pid cannot have been reused meanwhile.
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        return (
            self._log.with_suffix(".out").read_text(),
            self._log.with_suffix(".err").read_text(),
        )


def serve() -> None:
    """The server: one JSON request per line on stdin, one JSON reply per line on stdout."""
    import torch._dynamo  # noqa: F401  (the first optimizer imports it: pay for it once here)

    from facegan.__main__ import main

    print(json.dumps("ready"), flush=True)
    while line := sys.stdin.readline():
        request = json.loads(line)
        if "argv" in request:
            reply = _fork(main, request["argv"], Path(request["log"]))
        else:
            pid, status = os.waitpid(request["poll"], os.WNOHANG)
            reply = os.waitstatus_to_exitcode(status) if pid else None
        print(json.dumps(reply), flush=True)


def _fork(main, argv: list[str], log: Path) -> int:
    """Fork a child that runs main(argv) with stdout and stderr in log.out and log.err."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        for fd, path, mode in [
            (0, os.devnull, os.O_RDONLY),
            (1, log.with_suffix(".out"), os.O_WRONLY | os.O_CREAT),
            (2, log.with_suffix(".err"), os.O_WRONLY | os.O_CREAT),
        ]:
            os.dup2(os.open(path, mode), fd)
        code = main(argv)
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
