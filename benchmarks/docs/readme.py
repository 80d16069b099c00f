"""README.md's regions: the captions under the face grids, and the headline figures."""

from __future__ import annotations

from benchmarks.docs.formats import against, duration, number, pixels, speed, table, times
from benchmarks.docs.measurements import test_counts
from benchmarks.docs.metrics import CELEBA_REPORT, REPORT_RUN, celeba_report_rows, celeba_run
from benchmarks.docs.registry import generated
from benchmarks.docs.sources import Sources
from facegan.data import DEFAULT_SYNTHETIC_IMAGES


@generated("report-caption", list_sources=False)
def report_caption(sources: Sources) -> str:
    report = sources["report"]
    (run,) = report["runs"]
    s = run["settings"]
    return (
        f"*Faces drawn by the generator at the end of the default `{run['run_command']}` run: "
        f"built-in faces at {pixels(s['image_size'])}, {s['epochs']} epochs of "
        f"{s['n_images'] or DEFAULT_SYNTHETIC_IMAGES:,} faces at batch {s['batch_size']}, "
        f"`conv_dim` {s['conv_dim']}, EMA {s['ema']}, {s['precision']}; drawn at commit "
        f"{report['assets']['drawn_at_commit']} ({sources.link('report')}).*"
    )


@generated("celeba-dev-caption", list_sources=False)
def celeba_dev_caption(sources: Sources) -> str:
    run = celeba_run(sources, REPORT_RUN)
    s, m, assets = run["settings"], run["final"], sources[CELEBA_REPORT]["assets"]
    return (
        f"*Faces drawn by the report at its default settings on the 10,000 faces of the CelebA "
        f"development set, {pixels(s['image_size'])}: the real-data recipe, {s['epochs']} "
        f"epochs at batch {s['batch_size']} ({run['steps']:,} steps), "
        f"{duration(run['wall_seconds'])} from start to exit, made by `{run['run_command']}` "
        f"on commit {assets['drawn_at_commit']}. Face distance "
        f"{number(m['face_distance'], 4)} against a real floor of "
        f"{number(m['face_distance_real'], 4)} ({sources.link(CELEBA_REPORT)}).*"
    )


@generated("headline")
def headline(sources: Sources) -> str:
    report, tests = sources["report"], sources["make-test"]
    (run,) = report["runs"]
    m, goals = run["final"], report["goals"]
    rows = [
        (
            f"`{run['run_command']}` with `.venv` in place, start to exit",
            duration(run["wall_seconds"]),
            "report",
        ),
        (
            "default report: faces found by a face detector, generated / real",
            against(m["faces_found_ratio"], goals["faces_found_ratio"]),
            "report",
        ),
        (
            f"default report: kinds of built-in face drawn among {m['n']:,}, generated / real",
            against(m["mode_coverage"], goals["mode_coverage"]),
            "report",
        ),
        ("default report: FID, KID", m["fid_unavailable"], "report"),
        (
            "`make test` on a fresh clone, all in",
            f"{duration(tests['seconds']['make_test'])} ({test_counts(tests)})",
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
