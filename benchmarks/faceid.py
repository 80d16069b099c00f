"""Time the face measures on 1,000 faces, and dlib's own descriptor loop beside them.

Run from the repository root:

    python -m benchmarks.faceid [--data PATH] [--n 1000] [--dlib-faces 200] [--out FILE]

The faces are the real development set when --data (or FACEGAN_CELEBA_DEV) names it, else the
built-in faces, at 32 px. The reference set's descriptors are computed first, as evaluation
caches them; then the timed measure runs on n other faces: descriptors, Fréchet distance,
precision and recall. dlib's own loop (compute_face_descriptor on the same 150 px chips, one at
a time) is timed on --dlib-faces faces and scaled to n, and the two sets of descriptors are
compared. Prints the figures; writes benchmarks/results/faceid.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import cpu_model
from facegan import faceid
from facegan.data import load_faces
from facegan.synthfaces import render_faces

RESULTS = Path(__file__).resolve().parent / "results"
IMAGE_SIZE = 32
CELEBA_ENV = "FACEGAN_CELEBA_DEV"


def main() -> None:
    args = parse_args()
    source, faces = benchmark_faces(args.data, 2 * args.n)
    reference_images, generated = faces[: args.n], faces[args.n :]
    extractor = faceid.FaceDescriptors(device=args.device, dtype=getattr(torch, args.dtype))

    start = time.perf_counter()
    reference = faceid.FaceReference(
        "benchmark", IMAGE_SIZE, args.n, extractor(reference_images).astype(np.float32)
    )
    reference_seconds = time.perf_counter() - start

    start = time.perf_counter()
    measures = faceid.face_measures(generated, reference, extractor)
    measure_seconds = time.perf_counter() - start

    result = {
        "settings": {
            "faces": source,
            "image_size": IMAGE_SIZE,
            "n": args.n,
            "device": args.device,
            "dtype": args.dtype,
            "torch_threads": torch.get_num_threads(),
            "protocol": faceid.PROTOCOL_VERSION,
        },
        "torch_port": {
            "reference_descriptors_seconds": round(reference_seconds, 2),
            "measure_seconds": round(measure_seconds, 2),
            "faces_per_second": round(args.n / measure_seconds, 1),
            "measures": measures,
        },
        "dlib": dlib_loop(generated[: args.dlib_faces], extractor, args.n),
    }
    print_figures(result)
    write_result(args.out, result)


def benchmark_faces(data: str | None, count: int) -> tuple[str, np.ndarray]:
    """count faces at IMAGE_SIZE: the real set at `data` when given, else the built-in faces."""
    if data:
        return Path(data).name, np.asarray(load_faces(data, IMAGE_SIZE).images[:count])
    images, _ = render_faces(count, image_size=IMAGE_SIZE, seed=0)
    return "synthetic", images


def dlib_loop(images: np.ndarray, extractor: faceid.FaceDescriptors, n: int) -> dict:
    """dlib's descriptor loop timed on images, scaled to n faces; its agreement with the port."""
    try:
        import dlib
    except ImportError:
        return {"unavailable": "dlib is not installed (pip install dlib-bin)"}
    model = dlib.face_recognition_model_v1(str(faceid.model_path()))
    chips = faceid.resize_to_chips(images).permute(0, 2, 3, 1).to(torch.uint8).numpy()
    start = time.perf_counter()
    theirs = np.array([np.array(model.compute_face_descriptor(chip)) for chip in chips])
    seconds = time.perf_counter() - start
    ours = extractor(images)
    cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    return {
        "faces_timed": len(images),
        "seconds": round(seconds, 2),
        "faces_per_second": round(len(images) / seconds, 1),
        f"seconds_for_{n}_scaled": round(seconds * n / len(images), 1),
        "min_cosine_to_port": float(cosine.min()),
        "max_abs_difference_to_port": float(np.abs(ours - theirs).max()),
    }


def print_figures(result: dict) -> None:
    port, dlib = result["torch_port"], result["dlib"]
    n = result["settings"]["n"]
    print(f"faces: {result['settings']['faces']}, {n} against {n}, 32 px")
    print(
        f"torch port: {port['measure_seconds']} s for the whole measure of {n} faces "
        f"({port['faces_per_second']} faces/s); reference descriptors "
        f"{port['reference_descriptors_seconds']} s"
    )
    print("measures:", port["measures"])
    if "unavailable" in dlib:
        print("dlib:", dlib["unavailable"])
    else:
        print(
            f"dlib loop: {dlib['faces_per_second']} faces/s, {dlib[f'seconds_for_{n}_scaled']} s "
            f"for {n} (scaled); min cosine to the port {dlib['min_cosine_to_port']:.6f}"
        )


def write_result(path: Path, result: dict) -> None:
    """Write result with the command, machine, torch version and git commit that produced it."""
    record = {
        "command": shlex.join(["python", "-m", "benchmarks." + Path(sys.argv[0]).stem])
        + "".join(" " + shlex.quote(arg) for arg in sys.argv[1:]),
        # Other work on the machine slows the timed run; the 1-minute load average says how much.
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "load_average": os.getloadavg()[0],
        },
        "torch": torch.__version__,
        "commit": git_commit(),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        **result,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


def git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get(CELEBA_ENV), help="real faces (zip)")
    parser.add_argument("--n", type=int, default=faceid.DEFAULT_N, help="faces per side")
    parser.add_argument("--dlib-faces", type=int, default=200, help="faces for dlib's loop")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--out", type=Path, default=RESULTS / "faceid.json")
    return parser.parse_args()


if __name__ == "__main__":
    main()
