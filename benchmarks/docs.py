"""Rewrite the figures in README.md and docs/*.md from benchmarks/results/*.json.

Run from the repository root:

    python -m benchmarks.docs [--check]

A generated region sits between `<!-- generated: NAME -->` and `<!-- end generated -->`, each
marker on its own line; NAME picks the table below that fills it. Everything outside the regions
is hand-written and left alone. Each table ends with its sources: the results file, the command,
the commit, the machine and the torch version that file records, or "not recorded" where it
records none. With --check nothing is written, and the exit code is 1 when a file is out of date.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from facegan.errors import FaceGanError

REPO = Path(__file__).resolve().parents[1]
REGION = re.compile(
    r"^<!-- generated: (?P<name>[\w-]+) -->\n(?P<body>.*?)^<!-- end generated -->$",
    re.DOTALL | re.MULTILINE,
)
START = re.compile(r"^<!-- generated: ", re.MULTILINE)
NOT_RECORDED = "not recorded"


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


# Formatting: one rule per kind of figure, so every page prints a kind the same way.


def number(value: float, digits: int = 1) -> str:
    # Half up from the shortest decimal form, so 0.9755 prints as 97.6%, as a reader expects.
    exact = Decimal(repr(value)).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    return f"{exact:,.{digits}f}"


def percent(share: float, digits: int = 1) -> str:
    return number(share * 100, digits) + "%"


def times(ratio: float) -> str:
    return number(ratio, 2) + "x"


def speed(images_per_s: float) -> str:
    return number(images_per_s, 0 if images_per_s >= 1000 else 1)


def against(value: float, goal: float) -> str:
    return f"{number(value, 2)} (goal {goal})"


def pixels(label: str | int) -> str:
    """A size as results files write it (32 or '32px') as the pages write it: '32 px'."""
    return f"{str(label).removesuffix('px')} px"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{number(seconds)} s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s"
    hours, rest = divmod(round(seconds / 60), 60)
    return f"{hours} h {rest} min"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """A Markdown table; the columns numbered in right are right-aligned."""
    rule = ["---:" if i in right else "---" for i in range(len(header))]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [header, rule, *rows])


def machine(record: dict[str, Any]) -> str:
    found = record.get("machine") or {}
    cores, gpu = found.get("cores"), found.get("gpu", f"GPU {NOT_RECORDED}")
    return ", ".join(
        [
            found.get("cpu") or f"CPU {NOT_RECORDED}",
            f"{cores} cores" if cores else f"cores {NOT_RECORDED}",
            gpu or "no GPU",
        ]
    )


def source_line(sources: Sources, name: str) -> str:
    """One results file as a list item: command, commit, machine, torch, when, and any note."""
    record = sources[name]
    command = record.get("command")
    parts = [
        f"command `{command}`" if command else f"command {NOT_RECORDED}",
        f"commit {record.get('commit') or NOT_RECORDED}",
        machine(record),
        f"torch {record.get('torch') or NOT_RECORDED}",
    ]
    if record.get("timestamp"):
        parts.append(f"run {record['timestamp']}")
    note = record.get("note")
    return (
        f"- {sources.link(name)}: "
        + "; ".join(parts)
        + (f". {note[0].upper()}{note[1:]}." if note else ".")
    )


# The tables. Each reads its results files through Sources and returns Markdown.

Table = Callable[[Sources], str]
TABLES: dict[str, Table] = {}
UNLISTED: set[str] = set()  # regions that link their one results file in their own text


def generated(name: str, *, list_sources: bool = True) -> Callable[[Table], Table]:
    def register(build: Table) -> Table:
        TABLES[name] = build
        if not list_sources:
            UNLISTED.add(name)
        return build

    return register


@generated("report-caption", list_sources=False)
def report_caption(sources: Sources) -> str:
    report = sources["report"]
    s, assets = report["settings"], report["assets"]
    return (
        f"*Faces drawn by the generator at the end of the default `{report['command']}` run: "
        f"built-in faces at {pixels(s['image_size'])}, {s['epochs']} epochs of "
        f"{s['n_images']:,} faces at batch {s['batch_size']}, `conv_dim` {s['conv_dim']}, "
        f"EMA {s['ema']}; drawn at commit {assets['drawn_at_commit']}, and drawn again byte for "
        f"byte at commit {assets['drawn_again_byte_for_byte_at_commit']} "
        f"({sources.link('report')}).*"
    )


@generated("headline")
def headline(sources: Sources) -> str:
    report, tests = sources["report"], sources["make-test"]
    m = report["metrics"]
    rows = [
        (
            "`make report` on a fresh clone, all in",
            duration(report["seconds"]["make_report"]["value"]),
            "report",
        ),
        (
            "default report: faces found by a face detector, generated / real",
            against(m["face_rate_ratio"], m["face_rate_ratio_goal"]),
            "report",
        ),
        (
            "default report: kinds of built-in face drawn, generated / real",
            against(m["mode_coverage"], m["mode_coverage_goal"]),
            "report",
        ),
        ("FID, KID", f"not measured: {m['fid_unavailable']}", "report"),
        (
            "`make test` on a fresh clone, all in",
            f"{duration(tests['seconds']['make_test'])} ({tests['tests']} tests)",
            "make-test",
        ),
    ]
    for size in sources["throughput"]["sizes"]:
        per_s = size["images_per_s"]
        rows.append(
            (
                f"training speed, {pixels(size['image_size'])}: "
                "facegan / the PyTorch DCGAN example",
                f"{speed(per_s['median_b'])} / {speed(per_s['median_a'])} images/s "
                f"({times(size['ratio_b_over_a']['median'])})",
                "throughput",
            )
        )
    for job in sources["endtoend"]["jobs"]:
        rows.append(
            (
                f"whole run, {pixels(job['image_size'])}, {job['images']:,} JPEGs x "
                f"{job['epochs']} epochs, start to exit: the example / facegan",
                f"{duration(job['seconds']['a'])} / {duration(job['seconds']['b'])} "
                f"({times(job['ratio_b_over_a'])})",
                "endtoend",
            )
        )
    gpu, faults = sources["gpu-training"], sources["reliability"]
    per_s, kills, bad = gpu["images_per_s"], faults["kills"], faults["bad_inputs"]
    rows += [
        (
            f"training speed on a GPU, {pixels(gpu['settings']['image_size'])}",
            f"{speed(per_s['low'])} to {speed(per_s['high'])} images/s",
            "gpu-training",
        ),
        (
            "runs killed at random and resumed that ended bitwise equal to an unbroken run",
            f"{kills['runs_matching']} of {kills['runs_finished']}",
            "reliability",
        ),
        (
            "bad inputs refused with one clear line and no traceback",
            f"{bad['refused_correctly']} of {bad['cases']}",
            "reliability",
        ),
    ]
    rows += [(what, figure, CELEBA_REPORT) for what, figure in celeba_report_rows(sources)]
    return table(
        ["what", "figure", "source"],
        [(what, figure, sources.link(name)) for what, figure, name in rows],
    )


@generated("report")
def report_figures(sources: Sources) -> str:
    report = sources["report"]
    seconds, m, assets = report["seconds"], report["metrics"], report["assets"]
    labels = {
        "make_report": "`make report`, all in",
        "notebook": "of which the notebook ran",
        "training_and_evaluation": (
            f"training, {report['steps']:,} steps, and its {report['evaluations']} evaluations"
        ),
    }
    timing = [
        (label, duration(seconds[key]["value"]), seconds[key]["how"])
        for key, label in labels.items()
    ]
    quality = [
        (
            f"faces found by the Haar cascade ({m['n']} each)",
            f"{percent(m['face_rate'])} / {percent(m['face_rate_real'])}",
            against(m["face_rate_ratio"], m["face_rate_ratio_goal"]),
            m["how"],
        ),
        (
            f"attribute modes covered ({m['n']} each)",
            f"{m['modes']} / {m['modes_real']}",
            against(m["mode_coverage"], m["mode_coverage_goal"]),
            m["how"],
        ),
        (
            "attribute KL to real renders, nats",
            f"{number(m['attribute_kl'], 3)} / {number(m['attribute_kl_real'], 3)}",
            "",
            m["how"],
        ),
        (
            "classifier confidence",
            f"{number(m['confidence'], 3)} / {number(m['confidence_real'], 3)}",
            "",
            m["how"],
        ),
        ("FID, KID", f"not measured: {m['fid_unavailable']}", "", ""),
    ]
    pictures = ", ".join(f"`{Path(path).name}`" for path in assets["files"])
    again = ", ".join(f"`{Path(path).name}`" for path in assets["drawn_again_byte_for_byte"])
    return "\n\n".join(
        [
            f"Setup: {report['setup']}.",
            table(["what", "time", "how"], timing),
            table(["measure", "generated / real", "ratio", "how"], quality),
            f"The best checkpoint was epoch {report['best_epoch']}'s. The pictures {pictures} come "
            f"from the run at commit {assets['drawn_at_commit']} ({assets['setup']}); the run at "
            f"commit {assets['drawn_again_byte_for_byte_at_commit']} drew {again} again, "
            "byte for byte.",
        ]
    )


@generated("make-test")
def make_test(sources: Sources) -> str:
    tests = sources["make-test"]
    rows = [
        ("`make test`, all in", duration(tests["seconds"]["make_test"])),
        (f"of which pytest ran {tests['tests']} tests", duration(tests["seconds"]["pytest"])),
    ]
    return f"Setup: {tests['setup']}.\n\n" + table(["what", "time"], rows)


@generated("synthfaces")
def synthfaces(sources: Sources) -> str:
    run = sources["synthfaces"]
    render, haar = run["render"], run["haar"]
    one_core = " (pinned to one core)" if run["hardware"].get("pinned_core") is not None else ""
    rows = [
        (
            f"render {render['faces']:,} faces at {pixels(render['image_size'])}{one_core}",
            f"{duration(render['seconds'])} ({number(render['ms_per_face'])} ms a face)",
        )
    ]
    rows += [
        (f"Haar cascade finds a face, {pixels(size)} (first {haar['faces']:,})", percent(rate))
        for size, rate in haar["rates"].items()
    ]
    return table(["measure", "figure"], rows)


@generated("throughput")
def throughput(sources: Sources) -> str:
    return speed_table(sources, "throughput")


@generated("throughput-under-load")
def throughput_under_load(sources: Sources) -> str:
    return speed_table(sources, "throughput-under-load")


def speed_table(sources: Sources, name: str) -> str:
    """(a) the PyTorch DCGAN example against (b) facegan, then each of (b)'s settings."""
    run = sources[name]
    rows, settings = [], []
    for size in run["sizes"]:
        per_s, epoch = size["images_per_s"], size["celeba_epoch_s"]
        rows.append(
            (
                pixels(size["image_size"]),
                speed(per_s["median_a"]),
                speed(per_s["median_b"]),
                times(size["ratio_b_over_a"]["median"]),
                number(size["flops"]["step_gflop"], 3),
                number(size["gflop_per_s"]["b"]),
                f"{duration(epoch['a'])} / {duration(epoch['b'])}",
                "yes" if size["loss_check"]["comparable"] else "no",
            )
        )
        for setting, timed in size["ablation_b"].items():
            chosen = " (b)" if setting == size["b_variant"] else ""
            figure = (
                speed(timed["median"])
                if timed.get("median") is not None
                else f"not timed: {timed['skipped']}"
            )
            settings.append((pixels(size["image_size"]), setting + chosen, figure))
    header = [
        "size",
        "(a) example, images/s",
        "(b) facegan, images/s",
        "(b)/(a)",
        "GFLOP per image",
        "(b) GFLOP/s",
        f"CelebA epoch ({run['settings']['celeba_images']:,} images), (a) / (b)",
        "same maths",
    ]
    load, busy = run["load_average"], run.get("other_processes_cores")
    state = (
        f"Load average {number(load['before'][0])} before the run "
        f"and {number(load['after'][0])} after"
    )
    if busy is not None:
        state += f"; other processes kept {number(busy, 2)} of a core busy"
    return "\n\n".join(
        [
            table(header, rows, right=range(1, 6)),
            f"{state}; the run took {duration(run['runtime_s'])}. Each of (b)'s settings:",
            table(["size", "setting", "images/s"], settings, right=[2]),
        ]
    )


@generated("throughput-profile")
def throughput_profile(sources: Sources) -> str:
    run = sources["throughput-profile"]
    rows = []
    for who, label in (("a", "(a) the example"), ("b", "(b) facegan")):
        step = run["per_step"][who]
        wait = step.get("loader_wait_ms")
        rows.append(
            (
                label,
                f"{number(step['seconds'], 2)} s",
                f"{step['convolution_ms']} ms ({percent(step['convolution_share'], 0)})",
                f"{wait} ms" if wait is not None else "no loader",
            )
        )
    header = [
        f"per step of {run['batch_size']} images, {pixels(run['image_size'])}",
        "step",
        "convolutions, forward and backward",
        "waiting for the loader",
    ]
    return f"Timed with {run['profiler']}.\n\n" + table(header, rows)


@generated("freeze")
def freeze(sources: Sources) -> str:
    rows = [
        (
            pixels(size),
            speed(row["frozen_images_per_s"]),
            speed(row["unfrozen_images_per_s"]),
            times(row["ratio"]),
            str(row["repeats"]),
        )
        for size, row in sources["freeze"]["sizes"].items()
    ]
    header = ["size", "D frozen, images/s", "D not frozen, images/s", "ratio", "repeats"]
    return table(header, rows, right=range(1, 5))


@generated("gpu-training")
def gpu_training(sources: Sources) -> str:
    run = sources["gpu-training"]
    s, per_s = run["settings"], run["images_per_s"]
    compiled = "compiled" if s["compile"] else "not compiled"
    row = (
        f"{pixels(s['image_size'])}, `conv_dim` {s['conv_dim']}, batch {s['batch_size']}",
        f"images on {s['images_on']}, {s['precision']}, {s['memory_format']}, {compiled}",
        f"{speed(per_s['low'])} to {speed(per_s['high'])}",
        per_s["how"],
    )
    return table(["model", "trainer", "images/s", "how"], [row])


@generated("endtoend")
def endtoend(sources: Sources) -> str:
    """Whole programs, start to exit: the reference recipe against facegan's CLI."""
    run = sources["endtoend"]
    cpu = run["cpu"]
    rows = [
        (
            f"{pixels(job['image_size'])}, {job['images']:,} images x {job['epochs']} epochs",
            f"{duration(job['seconds']['a'])} ({speed(job['images_per_s']['a'])} images/s)",
            f"{duration(job['seconds']['b'])} ({speed(job['images_per_s']['b'])} images/s)",
            against(job["ratio_b_over_a"], run["target_ratio"]),
            f"{number(job['peak_rss_mib']['a'], 0)} / {number(job['peak_rss_mib']['b'], 0)} MiB",
        )
        for job in run["jobs"]
    ]
    header = [
        "job",
        "(a) reference recipe",
        "(b) `python -m facegan train`",
        "(b)/(a)",
        "peak RSS, (a) / (b)",
    ]
    bf16 = "computes bf16 natively" if cpu["native_bf16"] else "has no bf16 instructions"
    load, busy = run["load_average"], run.get("other_processes_cores")
    state = (
        f"On {cpu['model']} ({bf16}; torch {cpu['torch_capability']}, "
        f"{cpu['torch_threads']} threads), facegan at its defaults trained in "
        f"{run['facegan_precision']}. Load average {number(load['before'][0])} before the run "
        f"and {number(load['after'][0])} after"
    )
    if busy is not None:
        state += f"; other processes kept {number(busy, 2)} of a core busy"
    return f"{state}.\n\n" + table(header, rows, right=[1, 2, 3, 4])


@generated("precision")
def precision(sources: Sources) -> str:
    """bf16 against fp32 at the same compute: the main metric, and the other measures."""
    run = sources["precision"]
    summary, s = run["summary"], run["settings"]
    better = "higher" if summary["higher_is_better"] else "lower"

    def by_seed(results: list[dict], measure: str, digits: int) -> str:
        return ", ".join(number(r["metrics"][measure], digits) for r in results)

    rows = []
    for name, found in summary["by_precision"].items():
        results = [r for r in run["results"] if r["precision"] == name]
        rows.append(
            (
                name,
                f"{by_seed(results, summary['metric'], 3)} (mean {number(found['mean'], 3)})",
                by_seed(results, "mode_coverage", 2),
                by_seed(results, "faces_found_ratio", 2),
                ", ".join(f"{steps:,}" for steps in found["steps"]),
                f"{number(found['step_seconds'] * 1000)} ms",
            )
        )
    header = [
        "precision",
        f"{summary['metric'].replace('_', ' ').replace(' kl', ' KL')} by seed ({better} is better)",
        "modes covered",
        "faces found, generated / real",
        "steps in the budget",
        "one core's time a step",
    ]
    native = "computes bf16 natively" if run["native_bf16"] else "has no bf16 instructions"
    return (
        f"The default recipe at the report's settings on a CPU that {native}: "
        f"{number(s['budget_core_seconds'], 0)} seconds of one core for each run, seeds "
        f"{', '.join(map(str, s['seeds']))}, {s['eval_n']:,} faces scored. Verdict: "
        f"{summary['verdict']} (bf16 ahead by {number(summary['bf16_better_by'], 3)} on the "
        f"mean; the seeds of one precision lie up to {number(summary['seed_noise'], 3)} apart)."
        "\n\n" + table(header, rows, right=[4, 5])
    )


@generated("memory")
def memory(sources: Sources) -> str:
    """A large set trains from its memory-mapped cache."""
    run = sources["memory"]
    data, trained = run["dataset"], run["training"]
    after = trained["memory_mib"]
    rows = [
        (
            f"{data['images']:,} images at {pixels(data['image_size'])}, uint8 cache",
            f"{number(data['cache_mib'], 0)} MiB",
        ),
        (
            f"training process, peak RSS ({trained['steps']} steps of {trained['batch_size']})",
            f"{number(run['peak_rss_mib'], 0)} MiB ({percent(run['peak_rss_share_of_cache'], 0)}"
            " of the cache)",
        ),
        (
            "its private memory after training (weights, optimizer, activations)",
            f"{number(after['RssAnon'], 0)} MiB",
        ),
        ("its mapped files after training", f"{number(after['RssFile'], 0)} MiB"),
        ("of which the cache's pages it read", f"{number(run['cache_resident_mib'], 0)} MiB"),
    ]
    return table(["what", "memory"], rows, right=[1])


@generated("distributed")
def distributed(sources: Sources) -> str:
    """Plain training against torchrun with one and two processes, one thread each."""
    run = sources["distributed"]
    speedup = run["speedup_over_plain"]
    rows = [
        (setup, speed(images_per_s), times(speedup.get(setup, 1.0)))
        for setup, images_per_s in run["images_per_s"].items()
    ]
    return table(["setup", "images/s", "vs plain"], rows, right=[1, 2])


@generated("reliability")
def reliability(sources: Sources) -> str:
    run = sources["reliability"]
    kills, bad, every = run["kills"], run["bad_inputs"], run["settings"]["checkpoint_every"]
    fuzzed = "; ".join(
        f"{kind.replace('_', ' ')}: "
        + ", ".join(f"{count:,} {outcome}" for outcome, count in outcomes.items())
        for kind, outcomes in run["fuzz"].items()
        if isinstance(outcomes, dict)
    )
    rows = [
        (
            "SIGKILLs at random moments during training",
            f"{kills['kills']} ({kills['kills_mid_write']} in the middle of a checkpoint write)",
        ),
        (
            "checkpoints that loaded after a kill, and resumed",
            f"{kills['checkpoints_intact']} of {kills['resumes']} "
            f"({kills['kills'] - kills['resumes']} kills came before the first checkpoint)",
        ),
        (
            f"steps lost to a kill, at most (checkpoints every {every} step{'s' * (every != 1)})",
            str(kills["most_steps_lost"]),
        ),
        (
            "killed-and-resumed runs that ended bitwise equal to an unbroken run",
            f"{kills['runs_matching']} of {kills['runs_finished']}",
        ),
        (
            "bad inputs refused with exit 2, a clear message and no traceback",
            f"{bad['refused_correctly']} of {bad['cases']}",
        ),
        ("fuzzed inputs, each refused or read", fuzzed),
        ("files lost or changed", str(run["files_lost"] + bad["files_touched"])),
    ]
    return table(["what", "result"], rows)


@generated("coverage-classifier")
def coverage_classifier(sources: Sources) -> str:
    run = sources["attributes"]
    budget, classifiers = run["budget"], run["classifiers"]
    attributes = list(next(iter(classifiers.values()))["accuracy"])
    rows = [
        [pixels(size), duration(found["seconds"])]
        + [percent(found["accuracy"][a]) for a in attributes]
        for size, found in classifiers.items()
    ]
    header = ["size", "training"] + [a.replace("_", " ") for a in attributes]
    return (
        f"Trained on {budget['n_train']:,} renders for {budget['epochs']} epochs, one core; "
        f"held-out accuracy on {budget['n_test']:,} renders (joint: all seven attributes right):"
        "\n\n" + table(header, rows, right=range(1, len(header)))
    )


@generated("coverage-scores")
def coverage_scores(sources: Sources) -> str:
    scores = sources["attributes"]["scores"]
    rows = [
        (name, *(number(found[key], 3) for key in ("mode_coverage", "attribute_kl", "confidence")))
        for name, found in scores["generators"].items()
    ]
    header = [
        f"{scores['n']:,} faces at {pixels(scores['image_size'])} from",
        "modes covered",
        "attribute KL",
        "confidence",
    ]
    return table(header, rows, right=[1, 2, 3])


def recipe(result: dict[str, Any]) -> str:
    settings = ", ".join(f"{key} {value}" for key, value in result["settings"].items())
    return f"`{result['variant']}`" + (f" ({settings})" if settings else " (the DCGAN defaults)")


# A column of the recipe table: the data set, the figure ranked, whether higher is better, shown.
Column = tuple[str, Callable[[dict], float], bool, Callable[[dict], str]]
RECIPE_COLUMNS: list[Column] = [
    ("synthetic", lambda m: m["attribute_kl"], False, lambda m: number(m["attribute_kl"], 3)),
    ("synthetic", lambda m: m["modes"], True, lambda m: f"{m['modes']} / {m['modes_real']}"),
    ("synthetic", lambda m: m["face_rate_ratio"], True, lambda m: number(m["face_rate_ratio"], 2)),
    ("real", lambda m: m["face_rate_ratio"], True, lambda m: number(m["face_rate_ratio"], 2)),
]


@generated("recipes")
def recipes(sources: Sources) -> str:
    """Every recipe of the seed-0 study on both data sets, the best of each column in bold."""
    results = sources["quality"]["results"] + sources["quality-seed0-extra"]["results"]
    by_data = {"synthetic": {}, "real": {}}
    for r in results:
        by_data["synthetic" if r["data"] == "synthetic" else "real"][r["variant"]] = r
    real_name = next(iter(by_data["real"].values()))["data"]
    rows = []
    for variant in sorted(by_data["synthetic"], key=lambda v: v != "vanilla"):
        row = [recipe(by_data["synthetic"][variant]), str(by_data["synthetic"][variant]["steps"])]
        for data, figure, higher, show in RECIPE_COLUMNS:
            values = [figure(r["metrics"]) for r in by_data[data].values()]
            mine = by_data[data][variant]["metrics"]
            best = figure(mine) == (max(values) if higher else min(values))
            row.append(f"**{show(mine)}**" if best else show(mine))
        rows.append(row)
    header = [
        "recipe",
        "steps (built-in)",
        "built-in: attribute KL (lower is better)",
        "built-in: modes covered",
        "built-in: faces found, ratio to real",
        "real: faces found, ratio to real",
    ]
    real_rate = next(iter(by_data["real"].values()))["metrics"]["face_rate_real"]
    return (
        table(header, rows, right=range(1, 6))
        + f"\n\nReal faces: `{real_name}`; the Haar cascade finds a face in "
        f"{percent(real_rate)} of them."
    )


@generated("recipes-seeds")
def recipes_seeds(sources: Sources) -> str:
    summary = sources["quality-summary"]
    by_run = {(r["variant"], r["data"], r["seed"]): r["metrics"] for r in summary["results"]}
    (real,) = [name for name in summary["ranking"] if name != "synthetic"]
    seeds, ranks = summary["seeds"], summary["choice"]["mean_rank"]
    rows = []
    for variant in sorted(ranks, key=lambda v: (ranks[v], v)):
        kl = " / ".join(number(by_run[variant, "synthetic", s]["attribute_kl"], 3) for s in seeds)
        rate = " / ".join(number(by_run[variant, real, s]["face_rate_ratio"], 2) for s in seeds)
        rows.append((f"`{variant}`", kl, rate, f"{ranks[variant]:g}"))
    named = " / ".join(str(s) for s in seeds)
    header = [
        "recipe",
        f"built-in: attribute KL, seeds {named}",
        f"real: faces-found ratio, seeds {named}",
        "mean rank",
    ]
    return table(header, rows, right=[3]) + (
        f"\n\nChosen: `{summary['choice']['variant']}`; a tie on mean rank goes to the recipe "
        "with fewer settings."
    )


@generated("celeba-report")
def celeba_report(sources: Sources) -> str:
    run = sources["celeba-report"]
    data, s, m = run["data"], run["settings"], run["metrics"]
    evaluations = "; ".join(
        f"{when}: "
        + " to ".join(number(v, 2) for v in (value if isinstance(value, list) else [value]))
        for when, value in run["face_rate_ratio_by_evaluation"].items()
    )
    rows = [
        ("data", f"{data['name']}: {data['source']}, {data['crop']} ({data['images']:,} faces)"),
        (
            "training",
            f"{run['steps']:,} steps: {s['epochs']} epochs at batch {s['batch_size']}, "
            f"`conv_dim` {s['conv_dim']}, EMA {s['ema']}",
        ),
        ("training and evaluation", duration(run["seconds"]["training_and_evaluation"])),
        (
            f"faces found by the Haar cascade ({m['n']} each), generated / real",
            f"{percent(m['face_rate'])} / {percent(m['face_rate_real'])}: "
            f"ratio {against(m['face_rate_ratio'], m['face_rate_ratio_goal'])}",
        ),
        ("faces-found ratio at each evaluation", evaluations),
        ("best checkpoint", f"epoch {run['best_epoch']}"),
        ("its final grid", f"drawn at commit {run['assets']['drawn_at_commit']}"),
    ]
    return table(["what", "figure"], rows)


CELEBA_REPORT = "quality-celeba-report"


def celeba_run(sources: Sources, label: str) -> dict[str, Any]:
    """One run recorded in the development-set report's results file, by its label."""
    (run,) = [r for r in sources[CELEBA_REPORT]["runs"] if r["label"] == label]
    return run


def celeba_report_rows(sources: Sources) -> list[tuple[str, str]]:
    """The development-set run's face measures, each as generated / its real floor."""
    run = celeba_run(sources, "real-data recipe")
    m, before = run["final"], celeba_run(sources, "previous recipe")["final"]
    what = f"CelebA development set, 32 px, {run['settings']['epochs']} epochs"
    return [
        (
            f"{what}: face distance, generated / real floor (lower is better)",
            f"{number(m['face_distance'], 4)} / {number(m['face_distance_real'], 4)} "
            f"(the previous recipe: {number(before['face_distance'], 4)})",
        ),
        (
            f"{what}: face precision and recall, generated / real floor",
            f"{percent(m['face_precision'])} / {percent(m['face_precision_real'])} and "
            f"{percent(m['face_recall'])} / {percent(m['face_recall_real'])}",
        ),
        (
            f"{what}: faces found by the Haar cascade, generated / real",
            f"{percent(m['faces_found'])} / {percent(m['faces_found_real'])}",
        ),
    ]


@generated("celeba-dev-caption", list_sources=False)
def celeba_dev_caption(sources: Sources) -> str:
    run = celeba_run(sources, "real-data recipe")
    s, m, assets = run["settings"], run["final"], sources[CELEBA_REPORT]["assets"]
    return (
        f"*Faces drawn after {s['epochs']} epochs ({run['steps']:,} steps) on the 10,000 faces "
        f"of the CelebA development set at {pixels(s['image_size'])}, with the real-data "
        f"recipe (batch {s['batch_size']}), by `{run['run_command']}` on commit "
        f"{assets['drawn_at_commit']}: face distance {number(m['face_distance'], 4)} against "
        f"a real floor of {number(m['face_distance_real'], 4)} "
        f"({sources.link(CELEBA_REPORT)}).*"
    )


@generated("celeba-dev-report")
def celeba_dev_report(sources: Sources) -> str:
    """The report's recipe against the previous one on the development set, run by run."""
    rows = []
    for run in sources[CELEBA_REPORT]["runs"]:
        s, m, best = run["settings"], run["final"], run["best"]
        rows.append(
            (
                f"{run['label']}: `{run['run_command']}`",
                f"{s['epochs']} epochs, {run['steps']:,} steps, batch {s['batch_size']}, "
                f"`conv_dim` {s['conv_dim']}, EMA {s['ema']}, flip {s['flip']}",
                f"{number(m['face_distance'], 4)} / {number(m['face_distance_real'], 4)}",
                f"{percent(m['face_precision'], 0)} / {percent(m['face_recall'], 0)}",
                f"{percent(m['faces_found'], 0)} / {percent(m['faces_found_real'], 0)}",
                f"epoch {best['epoch']}",
            )
        )
    header = [
        "run",
        "recipe",
        "face distance / real floor",
        "precision / recall",
        "faces found / real",
        "best.pt",
    ]
    return table(header, rows, right=range(2, 5))


@generated("faceid-separation")
def faceid_separation(sources: Sources) -> str:
    """The face measures and both face detectors on real faces and on sets that should fail."""
    study = sources["faceid_separation"]
    settings = study["settings"]
    rows = [
        (
            case["case"],
            number(case["face_distance"], 4),
            percent(case["face_precision"]),
            percent(case["face_recall"]),
            percent(case["haar_faces_found"]),
            percent(case["dlib_hog_faces_found"]),
        )
        for case in study["cases"]
    ]
    header = [
        f"{settings['n']} faces at {pixels(settings['image_size'])}, against "
        f"{settings['n']} real ones",
        "face distance",
        "face precision",
        "face recall",
        "Haar finds a face",
        "dlib HOG finds a face",
    ]
    return table(header, rows, right=range(1, 6)) + (
        f"\n\nReal faces: `{settings['data']}`, a different {settings['n']} for the reference."
    )


def celeba_runs(sources: Sources) -> list[dict[str, Any]]:
    """Every run of the real-face recipe study: the first seed's study and the leaders' seeds."""
    return [r for name in CELEBA_STUDIES for r in sources[name]["results"]]


CELEBA_STUDIES = ("quality-celeba", "quality-celeba-b16", "quality-celeba-seed1")


@generated("recipes-celeba")
def recipes_celeba(sources: Sources) -> str:
    """Each recipe on real faces, ranked by its mean face distance over the seeds it ran."""
    runs = celeba_runs(sources)
    by_variant: dict[str, list[dict]] = {}
    for run in sorted(runs, key=lambda r: r["seed"]):
        by_variant.setdefault(run["variant"], []).append(run)

    def mean_distance(variant: str) -> float:
        scores = [r["metrics"]["face_distance"] for r in by_variant[variant]]
        return sum(scores) / len(scores)

    columns: list[Callable[[dict], str]] = [
        lambda r: str(r["seed"]),
        lambda r: f"{r['steps']:,}",
        lambda r: number(r["metrics"]["face_distance"], 4),
        lambda r: percent(r["metrics"]["face_precision"], 0),
        lambda r: percent(r["metrics"]["face_recall"], 0),
        lambda r: number(r["metrics"]["faces_found_ratio"], 2),
    ]
    rows = [
        [recipe(by_variant[v][0])]
        + [" / ".join(show(r) for r in by_variant[v]) for show in columns]
        for v in sorted(by_variant, key=mean_distance)
    ]
    floor = runs[0]["metrics"]
    header = [
        "recipe",
        "seeds",
        "steps",
        "face distance (lower is better)",
        "face precision",
        "face recall",
        "faces found, ratio to real",
    ]
    return table(header, rows, right=range(1, 7)) + (
        f"\n\nReal floor ({floor['face_n']:,} held-out real faces against the reference): face "
        f"distance {number(floor['face_distance_real'], 4)}, precision "
        f"{percent(floor['face_precision_real'], 0)}, recall "
        f"{percent(floor['face_recall_real'], 0)}."
    )


# Pages.


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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


if __name__ == "__main__":
    sys.exit(main())
