"""docs/measurements.md's regions: the report's and the tests' times, speed, memory, reliability."""

from __future__ import annotations

from pathlib import Path

from benchmarks.docs.formats import (
    against,
    duration,
    number,
    percent,
    pixels,
    speed,
    table,
    times,
)
from benchmarks.docs.registry import generated
from benchmarks.docs.sources import Sources


@generated("report")
def report_figures(sources: Sources) -> str:
    report = sources["report"]
    (run,) = report["runs"]
    s, m, goals = run["settings"], run["final"], report["goals"]
    setup = (
        f"`{run['run_command']}` with `.venv` in place: the notebook on the built-in faces at its "
        f"defaults ({pixels(s['image_size'])}, `conv_dim` {s['conv_dim']}, {s['epochs']} epochs "
        f"at batch {s['batch_size']}, EMA {s['ema']}, {s['precision']}), {run['steps']:,} "
        f"steps and {len(run['evaluations'])} evaluations of {m['n']:,} faces, then the HTML "
        f"export: {duration(run['wall_seconds'])} from start to exit."
    )
    quality = [
        (
            "faces found by the Haar cascade",
            f"{percent(m['faces_found'])} / {percent(m['faces_found_real'])}",
            against(m["faces_found_ratio"], goals["faces_found_ratio"]),
        ),
        (
            "attribute modes covered",
            f"{m['modes']:,} / {m['modes_real']:,}",
            against(m["mode_coverage"], goals["mode_coverage"]),
        ),
        (
            "attribute KL to real renders, nats",
            f"{number(m['attribute_kl'], 3)} / {number(m['real_attribute_kl'], 3)}",
            "",
        ),
        (
            "classifier confidence",
            f"{number(m['confidence'], 3)} / {number(m['real_confidence'], 3)}",
            "",
        ),
    ]
    curve = "; ".join(
        f"epoch {row['epoch']}: {number(row['mode_coverage'], 2)}" for row in run["evaluations"]
    )
    pictures = ", ".join(f"`{Path(path).name}`" for path in report["assets"]["files"])
    return "\n\n".join(
        [
            setup,
            table(["measure", "generated / real", "ratio"], quality),
            f"Mode coverage at each evaluation: {curve}. The best checkpoint was epoch "
            f"{run['best']['epoch']}'s. The pictures {pictures} come from this run, at commit "
            f"{report['assets']['drawn_at_commit']}.",
        ]
    )


def test_counts(tests: dict) -> str:
    """pytest's counts as recorded: '722 passed, 3 skipped' (or a bare total, 'N tests')."""
    counts = tests["tests"]
    if isinstance(counts, int):  # files written before the counts were recorded by kind
        return f"{counts} tests"
    return ", ".join(f"{number:,} {kind}" for kind, number in counts.items())


@generated("make-test")
def make_test(sources: Sources) -> str:
    tests = sources["make-test"]
    rows = [
        ("`make test`, all in", duration(tests["seconds"]["make_test"])),
        (f"of which pytest ({test_counts(tests)})", duration(tests["seconds"]["pytest"])),
    ]
    return f"Setup: {tests['setup']}.\n\n" + table(["what", "time"], rows)


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


@generated("throughput")
def throughput(sources: Sources) -> str:
    return speed_table(sources, "throughput")


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


@generated("throughput-under-load")
def throughput_under_load(sources: Sources) -> str:
    return speed_table(sources, "throughput-under-load")


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
