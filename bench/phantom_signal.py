"""How visible is each phantom finding at the size a model reads it? (issue 29, item 5)

For each finding and severity, over many patients' anatomies: draw the study without the finding and
with it (same anatomy, no noise or exposure change), shrink both to --size with area averaging (how
the generator and the CLIP read the 64 px phantom), and count the pixels the finding changes by at
least --threshold, and the largest change. A finding a 32 px model can learn to draw changes tens of
pixels; one that changes a handful is below what the generator's 8x8 latent carries.

    .venv/bin/python bench/phantom_signal.py --render 64 --size 32 --patients 200
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from pairaug_ray.corpora.phantom_anatomy import (
    Grid,
    base_image,
    draw_atelectasis,
    draw_consolidation,
    draw_edema,
    draw_effusion,
    heart_mask,
    sample_anatomy,
)
from pairaug_ray.corpora.phantom_reports import CTR_BY_SEVERITY


def shrink(img: np.ndarray, size: int) -> np.ndarray:
    k = img.shape[0] // size
    return img.reshape(size, k, size, k).mean(axis=(1, 3))


def draw(name: str, g: Grid, an, img: np.ndarray, severity: int, rng) -> np.ndarray:
    side = str(rng.choice(["right", "left"]))
    if name == "atelectasis":
        return draw_atelectasis(g, an, img, side, severity, rng)
    if name == "consolidation":
        return draw_consolidation(
            g, an, img, side, str(rng.choice(["upper", "middle", "lower"])), severity, rng
        )
    if name == "edema":
        return draw_edema(g, an, img, severity, rng)
    if name == "pleural effusion":
        return draw_effusion(g, an, img, side, severity)
    if name == "cardiomegaly":
        heart = heart_mask(g, an, CTR_BY_SEVERITY[severity])
        return img * (1 - heart) + 0.70 * heart
    raise ValueError(name)


def measure(render: int, size: int, patients: int, threshold: float, seed: int = 0) -> dict:
    g = Grid(render)
    rng = np.random.default_rng(seed)
    out: dict = {}
    names = ("atelectasis", "cardiomegaly", "consolidation", "edema", "pleural effusion")
    counts = {(n, s): [] for n in names for s in (1, 2, 3)}
    peaks = {(n, s): [] for n in names for s in (1, 2, 3)}
    for _ in range(patients):
        an = sample_anatomy(rng)
        base = base_image(g, an)["image"]
        heart = heart_mask(g, an, an.heart_ctr)
        plain = base * (1 - heart) + 0.70 * heart
        for n in names:
            for s in (1, 2, 3):
                start = base if n == "cardiomegaly" else plain
                diff = np.abs(shrink(draw(n, g, an, start.copy(), s, rng), size) - shrink(plain, size))
                counts[n, s].append(int((diff >= threshold).sum()))
                peaks[n, s].append(float(diff.max()))
    for n in names:
        out[n] = {
            str(s): {
                "pixels_median": float(np.median(counts[n, s])),
                "pixels_p10": float(np.percentile(counts[n, s], 10)),
                "peak_median": round(float(np.median(peaks[n, s])), 3),
            }
            for s in (1, 2, 3)
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--render", type=int, default=64, help="the phantom's rendered size")
    ap.add_argument("--size", type=int, default=32, help="the size the model reads")
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--threshold", type=float, default=0.05)
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args()
    result = measure(args.render, args.size, args.patients, args.threshold)
    print(
        f"pixels changed by >= {args.threshold} at {args.size} px (rendered at {args.render}), "
        f"median [10th percentile] over {args.patients} anatomies; peak change"
    )
    print(f"{'finding':<18}" + "".join(f"{'sev ' + s:>22}" for s in ("1", "2", "3")))
    for n, by in result.items():
        print(
            f"{n:<18}"
            + "".join(
                f"{by[s]['pixels_median']:>8.0f} [{by[s]['pixels_p10']:>3.0f}] pk {by[s]['peak_median']:.2f}"
                for s in ("1", "2", "3")
            )
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "result": result}, f, indent=1)


if __name__ == "__main__":
    main()
