"""docs/celeba.md's region: the report at its defaults on the CelebA development set."""

from __future__ import annotations

from benchmarks.docs.formats import duration, number, percent, table
from benchmarks.docs.metrics import REPORT_RUN, celeba_run
from benchmarks.docs.registry import generated
from benchmarks.docs.sources import Sources


@generated("celeba-report")
def celeba_report(sources: Sources) -> str:
    run = celeba_run(sources, REPORT_RUN)
    s, m = run["settings"], run["final"]
    curve = "; ".join(
        f"epoch {row['epoch']}: {number(row['face_distance'], 4)}" for row in run["evaluations"]
    )
    rows = [
        ("command", f"`{run['run_command']}`"),
        (
            "training",
            f"{run['steps']:,} steps: {s['epochs']} epochs at batch {s['batch_size']}, "
            f"`conv_dim` {s['conv_dim']}, EMA {s['ema']}, {s['precision']}",
        ),
        ("start to exit (training, evaluations, pictures, HTML)", duration(run["wall_seconds"])),
        (
            f"face distance on {m['face_n']:,} faces, generated / real floor",
            f"{number(m['face_distance'], 4)} / {number(m['face_distance_real'], 4)}",
        ),
        (
            "face precision and recall, generated / real floor",
            f"{percent(m['face_precision'])} / {percent(m['face_precision_real'])} and "
            f"{percent(m['face_recall'])} / {percent(m['face_recall_real'])}",
        ),
        (
            f"faces found by the Haar cascade ({m['n']:,} each), generated / real",
            f"{percent(m['faces_found'])} / {percent(m['faces_found_real'])}",
        ),
        ("face distance at each evaluation", curve),
        ("best.pt", f"epoch {run['best']['epoch']}"),
    ]
    return table(["what", "figure"], rows)
