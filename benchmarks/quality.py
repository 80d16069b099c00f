"""Recipe study: which training recipe draws the best faces for the same compute?

Run from the repository root:

    python -m benchmarks.quality [--real PATH.zip] [--real-only] [--budget 180]
                                 [--variants NAME ...] [--seeds 0] [--eval-n 2000] [--jobs 2]
                                 [--out PATH]
    python -m benchmarks.quality --merge JSON ... --out PATH
    python -m benchmarks.quality --record LABEL RUN_DIR COMMAND ... [--grid PNG] --out PATH
    python -m benchmarks.quality --run LABEL RUN_DIR COMMAND ... [--grid PNG] --out PATH

Every variant trains at the report's settings (32 px, conv_dim 32, batch 64) from the same
seed on the same data, for the same compute budget, and is then measured by the same
Evaluator on the same number of faces. The budget is counted in one core's time per step,
not in wall-clock seconds: each variant's step is timed on one thread first (process time,
warm-up excluded) and the run gets budget / step_time steps. Variants can then train two at
a time, one per core, and a busy machine slows every variant without favouring any.

Data: the built-in faces (20,000, seed 0) and, with --real, a folder or zip of real faces,
e.g. the CelebA development set (--real-only: that alone). Writes benchmarks/results/quality.json
(or --out) and prints a table per data set with each variant's rank on the main metric
(attribute KL on the built-in faces, the Fréchet distance on dlib's face descriptors on real
faces, FID where Inception is available). The real faces' evaluation measures N = 1,000 faces
when --eval-n is at least 2,000: the first 1,000 real faces are the reference, the next 1,000
give the real floor.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.record import REPO, write_results
from benchmarks.runs import record_runs
from facegan.config import TrainConfig
from facegan.data import load_faces
from facegan.evaluate import Evaluator, main_metric
from facegan.trainer import Trainer

# The report's settings: the study answers "what should the report train with?".
# Every recipe option is named, so "vanilla" stays the DCGAN paper's recipe whatever the
# defaults of TrainConfig become.
BASE = dict(image_size=32, conv_dim=32, batch_size=64, z_size=100, epochs=1000, log_every=10)
BASE |= dict(loss="bce", d_norm="batch", smooth=False, ema=0.0, flip=False)
VARIANTS: dict[str, dict] = {
    "vanilla": {},
    "smooth": {"smooth": True},
    "lsgan": {"loss": "lsgan"},
    "hinge-sn": {"loss": "hinge", "d_norm": "spectral"},
    # The WGAN-GP paper's Adam settings; one critic step per G step, like every variant here.
    "wgan-gp": {"loss": "wgan-gp", "d_norm": "none", "lr": 1e-4, "beta1": 0.0, "beta2": 0.9},
    "ema": {"ema": 0.999},
    "flip": {"flip": True},
    # D wins early in the vanilla recipe (D(G(z)) near 0.05): smoothing and EMA both target
    # the symptoms of a too-strong D and a jittery G, so try them together.
    "smooth-ema": {"smooth": True, "ema": 0.999},
    # The two leaders of the first study (seeds 0 and 1), together.
    "ema-flip": {"ema": 0.999, "flip": True},
    # Candidates on real faces, each one change to "ema" (the report's recipe until the real-face
    # study): a shorter EMA horizon for short runs, smaller batches (more steps for the same
    # compute), a wider network, and two other objectives.
    "ema-fast": {"ema": 0.99},
    "ema-b32": {"ema": 0.999, "batch_size": 32},
    "ema-b16": {"ema": 0.999, "batch_size": 16},
    "ema-wide": {"ema": 0.999, "conv_dim": 64},
    "ema-hinge-sn": {"ema": 0.999, "loss": "hinge", "d_norm": "spectral"},
    "ema-lsgan": {"ema": 0.999, "loss": "lsgan"},
    # The second real-face study, each one change to "ema-b16" (the real-data recipe it began
    # from): higher learning rates for both networks (one with a slower EMA too), TTUR (Heusel
    # et al. 2017: D faster than G) and its mirror image, a slower EMA, a smaller batch, and
    # Adam's beta2 of later GANs.
    "ema-b16-lr4": {"ema": 0.999, "batch_size": 16, "lr": 4e-4},
    "ema-b16-lr8": {"ema": 0.999, "batch_size": 16, "lr": 8e-4},
    "ema-b16-lr4-slow": {"ema": 0.9995, "batch_size": 16, "lr": 4e-4},
    "ema-b16-ttur": {"ema": 0.999, "batch_size": 16, "d_lr": 4e-4, "g_lr": 1e-4},
    "ema-b16-g-fast": {"ema": 0.999, "batch_size": 16, "d_lr": 2e-4, "g_lr": 4e-4},
    "ema-b16-slow": {"ema": 0.9995, "batch_size": 16},
    "ema-b8": {"ema": 0.999, "batch_size": 8},
    "ema-b16-beta2": {"ema": 0.999, "batch_size": 16, "beta2": 0.99},
}
# Candidates the trainer has no setting for, applied to its optimizers here: each network's own
# learning rate. One becomes a setting of TrainConfig if it wins.
OPTIMIZER_ONLY = ("d_lr", "g_lr")
CALIBRATION_STEPS = 12
WARMUP_STEPS = 4


def variant_trainer(config: TrainConfig, dataset, variant: str) -> Trainer:
    """A Trainer for config with the variant's OPTIMIZER_ONLY learning rates in place."""
    trainer = Trainer(config, dataset)
    settings = VARIANTS[variant]
    for optimizer, name in ((trainer.d_optimizer, "d_lr"), (trainer.g_optimizer, "g_lr")):
        for group in optimizer.param_groups:
            group["lr"] = settings.get(name, config.lr)
    return trainer


def variant_config(variant: str, **fixed) -> TrainConfig:
    """The TrainConfig of a variant: BASE with its changes, less those OPTIMIZER_ONLY makes."""
    changes = {k: v for k, v in VARIANTS[variant].items() if k not in OPTIMIZER_ONLY}
    return TrainConfig(**(BASE | changes), **fixed)


def step_seconds(config: TrainConfig, dataset) -> float:
    """One core's process time per training step of config, warm-up excluded."""
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(replace(config, out=folder), dataset)
        trainer.fit(progress=False, max_steps=WARMUP_STEPS)
        started = time.process_time()
        trainer.fit(progress=False, max_steps=WARMUP_STEPS + CALIBRATION_STEPS)
        return (time.process_time() - started) / CALIBRATION_STEPS


def run_variant(job: dict) -> dict:
    """Train one variant on one data set for the budget, then evaluate it (in a worker)."""
    torch.set_num_threads(1)
    dataset = load_faces(job["data"], BASE["image_size"], job["n_images"], progress=False)
    config = variant_config(job["variant"], data=job["data"], seed=job["seed"])
    per_step = step_seconds(config, dataset)  # a learning rate leaves the time per step alone
    steps = max(1, round(job["budget"] / per_step))
    with tempfile.TemporaryDirectory() as folder:
        config.out = folder
        config.eval_n = job["eval_n"]
        trainer = variant_trainer(config, dataset, job["variant"])
        wall, cpu = time.perf_counter(), time.process_time()
        history = trainer.fit(progress=False, max_steps=steps)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        result = trainer.evaluate(progress=False)
    # The last logging window, if the budget reached one.
    last = [row for row in history if row["kind"] == "train"][-1:] or [{}]
    return {
        "data": job["label"],
        **{k: job[k] for k in ("variant", "seed")},
        "settings": VARIANTS[job["variant"]],
        "steps": steps,
        "epochs": round(steps / trainer.steps_per_epoch, 2),
        "step_seconds": per_step,
        "train_cpu_seconds": cpu,
        "train_wall_seconds": wall,
        "final_d_real": last[0].get("d_real", float("nan")),
        "final_d_fake": last[0].get("d_fake", float("nan")),
        "metrics": {k: v for k, v in result.items() if k not in ("kind", "epoch", "step")},
    }


def rank(results: list[dict]) -> dict[str, dict]:
    """Per data set: each variant's main metric (mean over seeds) and its rank."""
    table: dict[str, dict] = {}
    for data in dict.fromkeys(r["data"] for r in results):
        rows = [r for r in results if r["data"] == data]
        metric, higher = main_metric(rows[0]["metrics"])
        means = {
            v: statistics.mean(r["metrics"][metric] for r in rows if r["variant"] == v)
            for v in dict.fromkeys(r["variant"] for r in rows)
        }
        order = sorted(means, key=means.get, reverse=higher)
        table[data] = {
            "metric": metric,
            "higher_is_better": higher,
            "scores": means,
            "ranks": {v: order.index(v) + 1 for v in means},
        }
    return table


def choose(ranking: dict[str, dict]) -> dict:
    """The variant with the best mean rank over the data sets (ties: the simpler one first)."""
    variants = list(next(iter(ranking.values()))["ranks"])
    mean_rank = {v: statistics.mean(t["ranks"][v] for t in ranking.values()) for v in variants}
    best = min(variants, key=lambda v: (mean_rank[v], len(VARIANTS[v])))
    return {"variant": best, "settings": VARIANTS[best], "mean_rank": mean_rank}


def print_tables(results: list[dict], ranking: dict[str, dict], choice: dict) -> None:
    for data, table in ranking.items():
        better = "higher" if table["higher_is_better"] else "lower"
        print(f"\n{data}: main metric {table['metric']} ({better} is better)")
        print(
            f"{'variant':<12} {'seed':>4} {'rank':>4} {'steps':>6} {'s/step':>7} {'faces':>6} "
            f"{'ratio':>6} {'modes':>7} {'KL':>7} {'conf':>6} {'facedist':>8} {'prec':>5} "
            f"{'recall':>6} {'D(x)':>5} {'D(G(z))':>8}"
        )
        for variant in sorted(table["ranks"], key=table["ranks"].get):
            for r in (r for r in results if r["data"] == data and r["variant"] == variant):
                m = r["metrics"]
                modes = f"{m['modes']}/{m['modes_real']}" if "modes" in m else "-"
                shown = {
                    key: f"{m[key]:.{digits}f}" if key in m else "-"
                    for key, digits in (
                        ("attribute_kl", 3),
                        ("confidence", 3),
                        ("face_distance", 4),
                        ("face_precision", 2),
                        ("face_recall", 2),
                    )
                }
                print(
                    f"{variant:<12} {r['seed']:>4} {table['ranks'][variant]:>4} {r['steps']:>6} "
                    f"{r['step_seconds']:>7.3f} {m['faces_found']:>6.1%} "
                    f"{m['faces_found_ratio']:>6.2f} {modes:>7} {shown['attribute_kl']:>7} "
                    f"{shown['confidence']:>6} {shown['face_distance']:>8} "
                    f"{shown['face_precision']:>5} {shown['face_recall']:>6} "
                    f"{r['final_d_real']:>5.2f} {r['final_d_fake']:>8.2f}"
                )
    print(f"\nbest mean rank: {choice['variant']} {choice['settings']}")


def merge(paths: Sequence[str], out: str) -> dict:
    """Rank the variants that every seed of several recorded studies trained, together."""
    results = [r for path in paths for r in json.loads(Path(path).read_text())["results"]]
    seeds = {r["seed"] for r in results}
    complete = [
        r
        for r in results
        if {x["seed"] for x in results if (x["data"], x["variant"]) == (r["data"], r["variant"])}
        == seeds
    ]
    ranking = rank(complete)
    choice = choose(ranking)
    print_tables(complete, ranking, choice)
    record = {"merged": [Path(p).name for p in paths], "seeds": sorted(seeds)}
    record |= {"results": complete, "ranking": ranking, "choice": choice}
    record = write_results(Path(out), record)
    print(f"wrote {out}")
    return record


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--synthetic-n", type=int, default=None, help="built-in faces to use")
    parser.add_argument("--real", help="a folder or zip of real faces to study besides")
    parser.add_argument("--real-n", type=int, default=None, help="use the first N real faces")
    parser.add_argument("--real-only", action="store_true", help="leave out the built-in faces")
    parser.add_argument("--budget", type=float, default=180.0, help="one core's seconds each")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--eval-n", type=int, default=2000, help="faces per evaluation")
    parser.add_argument("--jobs", type=int, default=2, help="variants trained at once")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "quality.json"))
    parser.add_argument(
        "--merge", nargs="+", metavar="JSON", help="rank recorded studies together; no training"
    )
    for flag, help_text in (
        ("--record", "record a finished run's evaluations (repeatable); no training"),
        ("--run", "run COMMAND, timing it, then record it as --record does (repeatable)"),
    ):
        parser.add_argument(
            flag, nargs=3, action="append", metavar=("LABEL", "RUN_DIR", "COMMAND"), help=help_text
        )
    parser.add_argument("--grid", help="with --record or --run: copy the first run's last grid")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out)
    if args.record and args.run:
        raise SystemExit("give --record or --run, not both: a results file records one way")
    if args.record or args.run:
        return record_runs(args.record or args.run, args.out, args.grid, run_first=bool(args.run))
    sources = [] if args.real_only and args.real else [("synthetic", args.synthetic_n)]
    sources += [(args.real, args.real_n)] if args.real else []
    for data, n in sources:  # decode and cache once, before the workers read the cache
        faces = load_faces(data, BASE["image_size"], n)
        if data != "synthetic":  # the face descriptors of the reference and the real floor
            real = np.asarray(faces.images[: args.eval_n])
            Evaluator(real, False, faces.key, metrics=["faceid"], progress=False)(real)
    if any(data == "synthetic" for data, _ in sources):
        from facegan.attributes import attribute_classifier

        attribute_classifier(BASE["image_size"])  # trained once here, cached for the workers
    jobs = [
        {"data": data, "label": Path(data).name, "n_images": n, "variant": v, "seed": seed}
        | {"budget": args.budget, "eval_n": args.eval_n}
        for data, n in sources
        for seed in args.seeds
        for v in args.variants
    ]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        results = []
        for result in pool.imap_unordered(run_variant, jobs):
            results.append(result)
            print(
                f"[{len(results)}/{len(jobs)}] {result['data']} {result['variant']}: "
                f"{result['steps']} steps, main {result['metrics']['main_metric']} = "
                f"{result['metrics'][result['metrics']['main_metric']]:.4f}",
                flush=True,
            )
    ranking = rank(results)
    choice = choose(ranking)
    print_tables(results, ranking, choice)
    record = {
        "load_average_at_end": os.getloadavg(),
        "settings": {
            "base": BASE,
            "budget_core_seconds": args.budget,
            "seeds": args.seeds,
            "eval_n": args.eval_n,
            "jobs": args.jobs,
            "data": [Path(data).name for data, _ in sources],
        },
        "wall_seconds": time.perf_counter() - started,
        "results": sorted(results, key=lambda r: (r["data"], r["variant"], r["seed"])),
        "ranking": ranking,
        "choice": choice,
    }
    record = write_results(Path(args.out), record)
    print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
