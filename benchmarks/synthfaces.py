"""Benchmark the procedural face set: render speed on one core and Haar detection rates.

Run from the repository root:

    python -m benchmarks.synthfaces [--n 20000] [--size 64] [--detect 2000]
                                    [--grid assets/synthetic_faces.png]

Writes benchmarks/results/synthfaces.json (hardware, versions, timings, rates).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from benchmarks.machine import cpu_model, pin_to_one_core
from benchmarks.record import REPO, RESULTS, write_results
from facegan import facedetect
from facegan.synthfaces import RENDERER_VERSION, render_faces

GRID_SIDE = 8


def main() -> None:
    args = parse_args()
    pinned = pin_to_one_core()
    cv2.setNumThreads(1)

    start = time.perf_counter()
    images, _ = render_faces(args.n, image_size=args.size, seed=args.seed)
    render_seconds = time.perf_counter() - start

    detect = min(args.detect, args.n)
    small, _ = render_faces(detect, image_size=32, seed=args.seed)
    rates = {
        args.size: facedetect.faces_found(images[:detect]),
        32: facedetect.faces_found(small),
    }
    if args.grid:
        save_grid(render_faces(GRID_SIDE**2, image_size=64, seed=args.seed)[0], args.grid)

    result = {
        "renderer_version": RENDERER_VERSION,
        "hardware": {"cpu": cpu_model(), "cores": os.cpu_count(), "pinned_core": pinned},
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "pillow": Image.__version__,
        },
        "render": {
            "faces": args.n,
            "image_size": args.size,
            "seed": args.seed,
            "seconds": round(render_seconds, 2),
            "ms_per_face": round(1000 * render_seconds / max(args.n, 1), 3),
        },
        "haar": {
            "protocol": {
                "cascade": facedetect.CASCADE_FILE,
                "detect_size": facedetect.DETECT_SIZE,
                "scale_factor": facedetect.SCALE_FACTOR,
                "min_neighbors": facedetect.MIN_NEIGHBORS,
                "min_size": facedetect.MIN_SIZE,
            },
            "faces": detect,
            "rates": {f"{size}px": round(rate, 4) for size, rate in rates.items()},
        },
    }
    out = RESULTS / "synthfaces.json"
    write_results(out, result)
    print_table(result)
    print(f"wrote {out.relative_to(REPO)}" + (f" and {args.grid}" if args.grid else ""))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="faces to render and time")
    parser.add_argument("--size", type=int, default=64, help="image size for the timed render")
    parser.add_argument("--detect", type=int, default=2000, help="faces per size for Haar rates")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", type=Path, help="save an 8x8 grid of 64 px faces here")
    return parser.parse_args()


def save_grid(faces: np.ndarray, path: Path) -> None:
    """Tile faces into a GRID_SIDE x GRID_SIDE sheet, doubled in size with nearest neighbour."""
    count, size = len(faces), faces.shape[1]
    rows = faces.reshape(GRID_SIDE, count // GRID_SIDE, size, size, 3).swapaxes(1, 2)
    sheet = Image.fromarray(rows.reshape(GRID_SIDE * size, -1, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.resize((sheet.width * 2, sheet.height * 2), Image.Resampling.NEAREST).save(path)


def print_table(result: dict) -> None:
    render, haar = result["render"], result["haar"]
    rows = [
        ("CPU", f"{result['hardware']['cpu']} ({result['hardware']['cores']} cores, 1 used)"),
        ("versions", ", ".join(f"{k} {v}" for k, v in result["versions"].items())),
        ("renderer", result["renderer_version"]),
        ("Haar protocol", ", ".join(f"{k}={v}" for k, v in haar["protocol"].items())),
        (
            f"render {render['faces']} @ {render['image_size']} px",
            f"{render['seconds']:.1f} s ({render['ms_per_face']:.2f} ms/face)",
        ),
    ]
    rows += [
        (f"Haar rate @ {size} ({haar['faces']} faces)", f"{rate:.3f}")
        for size, rate in haar["rates"].items()
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
