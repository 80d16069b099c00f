"""docs/metrics.md's regions: the face measures, attribute coverage and the recipe studies.

Also the CelebA development-set runs that README.md's headline and caption quote.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks.docs.formats import duration, number, percent, pixels, table, times
from benchmarks.docs.registry import generated
from benchmarks.docs.sources import Sources


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


CELEBA_STUDIES = ("quality-celeba", "quality-celeba-b16", "quality-celeba-seed1")


def celeba_runs(sources: Sources) -> list[dict[str, Any]]:
    """Every run of the real-face recipe study: the first seed's study and the leaders' seeds."""
    return [r for name in CELEBA_STUDIES for r in sources[name]["results"]]


# The second real-face study: the real-data recipe against one change each, and against the
# previous recipe, at about the training compute of the development-set report.
CELEBA_SECOND_STUDY = "quality-celeba-study2"


@generated("recipes-celeba")
def recipes_celeba(sources: Sources) -> str:
    """The first real-face study's recipes, ranked by their mean face distance."""
    return recipe_table(celeba_runs(sources))


# The variants of the second study that stand for the real-data recipe and the previous one.
REAL_RECIPE_VARIANT, PREVIOUS_VARIANT = "ema-b16", "ema"


@generated("recipes-celeba-second")
def recipes_celeba_second(sources: Sources) -> str:
    """The second real-face study's recipes, ranked by their mean face distance, and what the
    real-data recipe is worth at equal compute."""
    runs = sources[CELEBA_SECOND_STUDY]["results"]
    scores: dict[str, list[float]] = {}
    for run in runs:
        scores.setdefault(run["variant"], []).append(run["metrics"]["face_distance"])
    mean = {variant: sum(found) / len(found) for variant, found in scores.items()}
    recipe, before = mean[REAL_RECIPE_VARIANT], mean[PREVIOUS_VARIANT]
    leader = min(mean, key=mean.get)
    spread = max(max(found) - min(found) for found in scores.values())
    return recipe_table(runs) + (
        f"\n\nMean face distance over the seeds: `{REAL_RECIPE_VARIANT}` {number(recipe, 4)} "
        f"against `{PREVIOUS_VARIANT}` {number(before, 4)}, ratio {times(recipe / before)}; "
        f"the leader, `{leader}`, {number(mean[leader], 4)} "
        f"({percent(1 - mean[leader] / recipe, 0)} below `{REAL_RECIPE_VARIANT}`). The widest "
        f"gap between the two seeds of one recipe: {number(spread, 4)}."
    )


def recipe_table(runs: list[dict[str, Any]]) -> str:
    """Each recipe on real faces, ranked by its mean face distance over the seeds it ran."""
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


CELEBA_REPORT = "quality-celeba-report"


def celeba_run(sources: Sources, label: str) -> dict[str, Any]:
    """One run recorded in the development-set report's results file, by its label."""
    (run,) = [r for r in sources[CELEBA_REPORT]["runs"] if r["label"] == label]
    return run


# The labels of the two runs in CELEBA_REPORT: the report at its defaults, and at the defaults
# it had before the real-data recipe.
REPORT_RUN, PREVIOUS_RUN = "development-set report", "previous report"


def celeba_report_rows(sources: Sources) -> list[tuple[str, str]]:
    """The development-set report's time and face measures, each beside what it is held to."""
    run, before = celeba_run(sources, REPORT_RUN), celeba_run(sources, PREVIOUS_RUN)
    m, was = run["final"], before["final"]
    what = "CelebA development set, 32 px, report at its defaults"
    return [
        (
            f"{what}: start to exit",
            f"{duration(run['wall_seconds'])} (budget 10 min; before the real-data recipe: "
            f"{duration(before['wall_seconds'])})",
        ),
        (
            f"{what}: face distance, generated / real floor (lower is better)",
            f"{number(m['face_distance'], 4)} / {number(m['face_distance_real'], 4)} "
            f"(before the real-data recipe: {number(was['face_distance'], 4)}; ratio "
            f"{times(m['face_distance'] / was['face_distance'])}, goal 0.5x)",
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


@generated("celeba-dev-report")
def celeba_dev_report(sources: Sources) -> str:
    """The report's recipe against the previous one on the development set, run by run."""
    rows = []
    for run in sources[CELEBA_REPORT]["runs"]:
        s, m, best = run["settings"], run["final"], run["best"]
        rows.append(
            (
                f"{run['label']}: `{run['run_command']}`",
                duration(run["wall_seconds"]),
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
        "start to exit",
        "recipe",
        "face distance / real floor",
        "precision / recall",
        "faces found / real",
        "best.pt",
    ]
    return table(header, rows, right=(1, 3, 4, 5))
