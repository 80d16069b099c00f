"""bf16 against fp32 at the same compute: are the faces as good?

Run from the repository root:

    python -m benchmarks.precision [--seeds 0 1] [--budget 150] [--eval-n 1000] [--jobs 2]

The recipe study's protocol (benchmarks/quality.py): the report's settings and the default
recipe (the study's "ema" variant), the built-in faces, and a budget counted in one core's
process time, so that a precision that steps faster gets more steps, as it would in a run of
the same length. Each precision trains from each seed and is scored by the same Evaluator on
the same faces; the main metric is the study's (attribute KL on the built-in faces, lower is
better). Writes benchmarks/results/precision.json.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.quality import BASE, VARIANTS, step_seconds
from benchmarks.record import RESULTS, write_results
from facegan.config import TrainConfig
from facegan.data import load_faces
from facegan.evaluate import main_metric
from facegan.runtime import native_bf16
from facegan.trainer import Trainer

RECIPE = "ema"  # the study's name for TrainConfig's default recipe
PRECISIONS = ("fp32", "bf16")
SYNTHETIC_N = 20_000


def train_and_score(job: dict) -> dict:
    """Train the default recipe in one precision for the budget, then evaluate (a worker)."""
    torch.set_num_threads(1)
    faces = load_faces("synthetic", BASE["image_size"], SYNTHETIC_N, progress=False)
    settings = BASE | VARIANTS[RECIPE] | {"precision": job["precision"], "device": "cpu"}
    config = TrainConfig(**settings, seed=job["seed"], eval_n=job["eval_n"])
    per_step = step_seconds(config, faces)
    steps = max(1, round(job["budget"] / per_step))
    with tempfile.TemporaryDirectory() as folder:
        config.out = folder
        trainer = Trainer(config, faces)
        started = time.process_time()
        trainer.fit(progress=False, max_steps=steps)
        cpu = time.process_time() - started
        scores = trainer.evaluate(progress=False)
    metrics = {k: v for k, v in scores.items() if k not in ("kind", "epoch", "step")}
    return {**job, "steps": steps, "step_seconds": per_step, "train_cpu_s": cpu, "metrics": metrics}


def summarise(results: list[dict]) -> dict:
    """Per precision: the main metric's mean, its seeds' spread, and bf16 against fp32."""
    metric, higher = main_metric(results[0]["metrics"])
    by = {p: [r for r in results if r["precision"] == p] for p in PRECISIONS}
    scores = {p: [r["metrics"][metric] for r in rows] for p, rows in by.items()}
    means = {p: statistics.fmean(values) for p, values in scores.items()}
    # Seed noise: the largest gap between two seeds of one precision.
    noise = max(max(values) - min(values) for values in scores.values())
    gain = means["bf16"] - means["fp32"] if higher else means["fp32"] - means["bf16"]
    return {
        "metric": metric,
        "higher_is_better": higher,
        "by_precision": {
            p: {
                "scores": scores[p],
                "mean": means[p],
                "steps": [r["steps"] for r in by[p]],
                "step_seconds": statistics.fmean(r["step_seconds"] for r in by[p]),
            }
            for p in PRECISIONS
        },
        "bf16_better_by": gain,
        "seed_noise": noise,
        "verdict": "bf16 no worse beyond seed noise" if gain >= -noise else "bf16 worse",
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--budget", type=float, default=150.0, help="one core's seconds each")
    parser.add_argument("--eval-n", type=int, default=1000, help="faces per evaluation")
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once")
    parser.add_argument("--out", default=str(RESULTS / "precision.json"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    load_faces("synthetic", BASE["image_size"], SYNTHETIC_N)  # cached once for the workers
    from facegan.attributes import attribute_classifier

    attribute_classifier(BASE["image_size"])  # trained once here, cached for the workers
    jobs = [
        {"precision": p, "seed": s, "budget": args.budget, "eval_n": args.eval_n}
        for s in args.seeds
        for p in PRECISIONS
    ]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        results = []
        for result in pool.imap_unordered(train_and_score, jobs):
            results.append(result)
            metric = result["metrics"]["main_metric"]
            print(
                f"{result['precision']} seed {result['seed']}: {result['steps']} steps "
                f"({result['step_seconds']:.3f} s each), {metric} "
                f"{result['metrics'][metric]:.4f}",
                flush=True,
            )
    results.sort(key=lambda r: (r["precision"], r["seed"]))
    summary = summarise(results)
    print(
        f"{summary['metric']}: fp32 {summary['by_precision']['fp32']['mean']:.4f}, bf16 "
        f"{summary['by_precision']['bf16']['mean']:.4f}; seed noise {summary['seed_noise']:.4f}"
        f" -> {summary['verdict']}"
    )
    payload = {
        "native_bf16": native_bf16(torch.device("cpu")),
        "settings": {
            "base": BASE | VARIANTS[RECIPE],
            "recipe": RECIPE,
            "budget_core_seconds": args.budget,
            "seeds": args.seeds,
            "eval_n": args.eval_n,
            "synthetic_n": SYNTHETIC_N,
            "threads_per_run": 1,
            "jobs": args.jobs,
        },
        "wall_s": time.perf_counter() - started,
        "results": results,
        "summary": summary,
    }
    write_results(Path(args.out), payload)
    print(f"wrote {args.out}")
    return payload


if __name__ == "__main__":
    main()
