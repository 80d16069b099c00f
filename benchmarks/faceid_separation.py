"""How well the face measures and the face detectors tell real faces from poor ones.

Run from the repository root:

    python -m benchmarks.faceid_separation --data PATH [--n 500] [--out FILE]

PATH is a real-face set (for example the CelebA development zip; FACEGAN_CELEBA_DEV is read when
--data is not given), loaded at 32 px. The first n faces are the reference; each case below has
n images and is scored against it: face distance, precision, recall, the Haar cascade's
faces-found rate and, where dlib is installed, dlib's HOG detector's (run on the 150 px chips
the descriptors see, without upsampling). Prints a table; writes
benchmarks/results/faceid_separation.json.

Cases: n other real faces; those faces blurred (Gaussian, radius 1 px); 8 of them repeated;
uniform noise; the built-in cartoon faces.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from benchmarks.faceid import CELEBA_ENV, IMAGE_SIZE, RESULTS, write_result
from facegan import faceid
from facegan.data import load_faces
from facegan.facedetect import faces_found
from facegan.synthfaces import render_faces

BLUR_RADIUS = 1
REPEATED = 8


def main() -> None:
    args = parse_args()
    if not args.data:
        raise SystemExit(f"give --data PATH (a real-face set) or set {CELEBA_ENV}")
    faces = np.asarray(load_faces(args.data, IMAGE_SIZE).images[: 2 * args.n])
    reference, other = faces[: args.n], faces[args.n :]
    extractor = faceid.default_extractor()
    reference_descriptors = extractor(reference)
    rows = []
    for name, images in cases(other, args.n).items():
        row = {"case": name, **faceid.compare_descriptors(reference_descriptors, extractor(images))}
        row["haar_faces_found"] = faces_found(images)
        row["dlib_hog_faces_found"] = hog_faces_found(images)
        rows.append(row)
        print_row(row)
    settings = {"data": Path(args.data).name, "image_size": IMAGE_SIZE, "n": args.n}
    write_result(args.out, {"settings": settings, "cases": rows})


def cases(other: np.ndarray, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "other real faces": other,
        f"real, Gaussian blur {BLUR_RADIUS} px": blur(other),
        f"{REPEATED} real faces repeated": np.resize(other[:REPEATED], other.shape),
        "uniform noise": rng.integers(0, 256, other.shape, dtype=np.uint8),
        "the built-in cartoon faces": render_faces(n, image_size=IMAGE_SIZE, seed=0)[0],
    }


def blur(images: np.ndarray) -> np.ndarray:
    gaussian = ImageFilter.GaussianBlur(BLUR_RADIUS)
    return np.stack([np.asarray(Image.fromarray(image).filter(gaussian)) for image in images])


def hog_faces_found(images: np.ndarray) -> float | None:
    """dlib's HOG detector's faces-found rate on the protocol's 150 px chips; None without dlib."""
    try:
        import dlib
    except ImportError:
        return None
    detector = dlib.get_frontal_face_detector()
    chips = faceid.resize_to_chips(images).permute(0, 2, 3, 1).byte().numpy()
    return float(np.mean([len(detector(chip, 0)) > 0 for chip in chips]))


def print_row(row: dict) -> None:
    hog = row["dlib_hog_faces_found"]
    print(
        f"{row['case']:28s} distance {row['face_distance']:.4f}  precision "
        f"{row['face_precision']:.3f}  recall {row['face_recall']:.3f}  Haar "
        f"{row['haar_faces_found']:.3f}  HOG {'-' if hog is None else f'{hog:.3f}'}"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get(CELEBA_ENV), help="real faces (zip)")
    parser.add_argument("--n", type=int, default=500, help="faces per case")
    parser.add_argument("--out", type=Path, default=RESULTS / "faceid_separation.json")
    return parser.parse_args()


if __name__ == "__main__":
    main()
