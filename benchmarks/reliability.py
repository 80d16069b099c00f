"""Benchmark reliability: the kill, bad-input and fuzz suites of the tests, at full size.

Run from the repository root:

    python -m benchmarks.reliability [--kills 100] [--fuzz 2000] [--fuzz-folders 200]
                                     [--epochs 5] [--checkpoint-every 1] [--seed 0]
                                     [--launch fork|program]

The suites are those of tests/test_reliability.py and tests/test_fuzz.py (the code is in
tests/support/faults.py): SIGKILL training at random moments and resume it, give every bad input to
`python -m facegan`, and fuzz decode_image and load_faces. Killed launches are forked from
a warm interpreter (tests/support/launcher.py) unless --launch program starts each as a new
`python -m facegan`, at seconds of start-up per kill; the uninterrupted reference run is
always the real program.

Prints the cases tried, the faults injected, the resumes that matched bitwise and the files
lost (which must be 0); writes benchmarks/results/reliability.json with the hardware,
versions and settings. Exits 1 if anything was lost, mismatched or wrongly refused.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import hypothesis
import numpy as np
import PIL
import torch
from hypothesis import given, settings

from benchmarks.machine import cpu_model
from benchmarks.record import REPO, RESULTS, write_results
from tests.support.faults import (
    BAD_INPUTS,
    STEPS_PER_EPOCH,
    TINY_TRAIN,
    TinyRun,
    check_decode,
    check_load_folder,
    folders,
    invoke_program,
    kill_at_random_moments,
    mutated_images,
    random_bytes,
    reference_run,
    refuse,
    run_differences,
)
from tests.support.launcher import Launcher


def main() -> int:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="facegan-reliability-") as tmp:
        work = Path(tmp)
        os.environ["FACEGAN_CACHE"] = str(work / "cache")  # the launches inherit it
        result = {
            "hardware": {"cpu": cpu_model(), "cores": os.cpu_count()},
            "versions": versions(),
            "settings": vars(args) | {"train": TINY_TRAIN},
            "kills": timed(kill_suite, args, work / "kills"),
            "bad_inputs": timed(bad_input_suite, work / "bad"),
            "fuzz": timed(fuzz_suite, args),
        }
    result["files_lost"] = result["kills"]["files_lost"] + result["bad_inputs"]["files_touched"]
    out = RESULTS / "reliability.json"
    write_results(out, result)
    print_summary(result)
    print(f"wrote {out.relative_to(REPO)}")
    return 0 if passed(result) else 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100, help="SIGKILLs of training")
    parser.add_argument("--fuzz", type=int, default=2000, help="fuzzed images of each kind")
    parser.add_argument("--fuzz-folders", type=int, default=200, help="fuzzed folders")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of a run (4 steps each)")
    parser.add_argument("--checkpoint-every", type=int, default=1, help="steps per checkpoint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--launch",
        choices=("fork", "program"),
        default="fork",
        help="start each killed launch forked from a warm interpreter, or as a new program",
    )
    return parser.parse_args()


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "hypothesis": hypothesis.__version__,
    }


def timed(suite: Callable[..., dict], *args: object) -> dict:
    started = time.perf_counter()
    return suite(*args) | {"seconds": round(time.perf_counter() - started, 1)}


def kill_suite(args: argparse.Namespace, work: Path) -> dict:
    """Kill and resume runs; each finished one must equal the real program's unbroken run."""
    run = TinyRun(epochs=args.epochs, checkpoint_every=args.checkpoint_every)
    reference_run(run, work / "reference")
    with contextlib.ExitStack() as stack:
        if args.launch == "fork":
            run = replace(run, launcher=stack.enter_context(Launcher()))
        # Timed as the kills are launched, so that they land within start-up and training.
        timing = reference_run(run, work / "timing")
        launches_differ = run_differences(work / "reference", work / "timing")
        reference = replace(timing, run_dir=work / "reference")
        report = kill_at_random_moments(run, reference, work / "runs", args.kills, args.seed)
    return asdict(report) | {
        "steps_per_run": args.epochs * STEPS_PER_EPOCH,
        "startup_s": round(timing.startup, 2),
        "training_s": round(timing.span, 2),
        "launches_differ": launches_differ,
    }


def bad_input_suite(work: Path) -> dict:
    """Every bad input through the real program."""
    refusals = {}
    for number, case in enumerate(BAD_INPUTS):
        if case.applies:
            folder = work / f"case-{number}"
            folder.mkdir(parents=True)
            refusals[case.name] = refuse(case, folder, invoke_program)
    return {
        "cases": len(BAD_INPUTS),
        "not_applicable": [case.name for case in BAD_INPUTS if not case.applies],
        "refused_correctly": sum(not refusal.problems for refusal in refusals.values()),
        "wrong": {name: r.problems for name, r in refusals.items() if r.problems},
        "files_touched": sum(len(refusal.touched) for refusal in refusals.values()),
    }


def fuzz_suite(args: argparse.Namespace) -> dict:
    return {
        "decode_random_bytes": fuzzed(check_decode, random_bytes, args.fuzz, args.seed),
        "decode_mutated_images": fuzzed(check_decode, mutated_images, args.fuzz, args.seed),
        "load_faces_folders": fuzzed(check_load_folder, folders, args.fuzz_folders, args.seed),
    }


def fuzzed(check: Callable[[object], str], strategy, examples: int, seed: int) -> dict:
    """Outcomes of check on `examples` drawn examples, counted, and the failure if any."""
    outcomes: Counter[str] = Counter()

    @hypothesis.seed(seed)
    @settings(max_examples=examples, deadline=None, database=None)
    @given(strategy)
    def run(example) -> None:
        outcomes[check(example)] += 1

    try:
        run()
    except Exception as error:  # hypothesis re-raises the shrunk failing example's error
        return dict(outcomes) | {"failure": f"{type(error).__name__}: {error}"}
    return dict(outcomes)


def passed(result: dict) -> bool:
    kills, bad, fuzz = result["kills"], result["bad_inputs"], result["fuzz"]
    return not (
        result["files_lost"]
        or bad["wrong"]
        or kills["launches_differ"]
        or kills["runs_matching"] != kills["runs_finished"]
        or kills["tracebacks"]
        or kills["most_steps_lost"] > result["settings"]["checkpoint_every"]
        or any("failure" in counts for counts in fuzz.values() if isinstance(counts, dict))
    )


def print_summary(result: dict) -> None:
    kills, bad, fuzz = result["kills"], result["bad_inputs"], result["fuzz"]
    fuzzed_kinds = {name: counts for name, counts in fuzz.items() if name != "seconds"}
    examples = sum(
        count
        for counts in fuzzed_kinds.values()
        for key, count in counts.items()
        if key != "failure"
    )
    rows = [
        ("CPU", f"{result['hardware']['cpu']} ({result['hardware']['cores']} cores)"),
        ("versions", ", ".join(f"{k} {v}" for k, v in result["versions"].items())),
        (
            "runs",
            f"{kills['steps_per_run']} steps, a checkpoint every "
            f"{result['settings']['checkpoint_every']}; launched by {result['settings']['launch']}"
            f" in {kills['startup_s']} s, trained in {kills['training_s']} s",
        ),
        (
            "cases tried",
            f"{len(BAD_INPUTS)} bad inputs ({len(bad['not_applicable'])} not applicable here), "
            f"{examples} fuzzed examples",
        ),
        (
            "faults injected",
            f"{kills['kills']} SIGKILLs, {kills['kills_mid_write']} of them mid checkpoint write",
        ),
        (
            "after the kills",
            f"{kills['checkpoints_intact']} checkpoints loaded; at most "
            f"{kills['most_steps_lost']} step(s) lost; {kills['tracebacks']} tracebacks",
        ),
        (
            "resumes",
            f"{kills['resumes']} with --resume; {kills['runs_matching']} of "
            f"{kills['runs_finished']} finished runs matched bitwise ({kills['seconds']} s)",
        ),
        (
            "bad inputs",
            f"{bad['refused_correctly']} refused with exit 2, the message and no traceback "
            f"({bad['seconds']} s)",
        ),
        *((f"fuzz {name}", str(counts)) for name, counts in fuzzed_kinds.items()),
        ("fuzz time", f"{fuzz['seconds']} s"),
        ("files lost", str(result["files_lost"])),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for name, problems in bad["wrong"].items():
        print(f"WRONG: {name}: {'; '.join(problems)}")
    for mismatch in kills["mismatches"] + kills["launches_differ"]:
        print(f"MISMATCH: {mismatch}")


if __name__ == "__main__":
    sys.exit(main())
