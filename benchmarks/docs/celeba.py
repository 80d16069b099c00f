"""docs/celeba.md's region: the report's recipe trained on real CelebA faces."""

from __future__ import annotations

from benchmarks.docs.formats import against, duration, number, percent, table
from benchmarks.docs.registry import generated
from benchmarks.docs.sources import Sources


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
