"""Evaluation speed: the vectorised bootstrap against CheXzero's per-resample loop, and image embedding
throughput of the Ray Data actor stage against a plain loop, in the same run.

    .venv/bin/python bench/evaluate.py                        # 1,000 resamples x 500 images x 5 labels
    .venv/bin/python bench/evaluate.py --images 128 --preset tiny
    python bench/evaluate.py --preset vit-b-32 --gpu           # on a GPU node
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
from memory import PeakMemory  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_auc_score  # noqa: E402
from sklearn.utils import resample  # noqa: E402

from pairaug_ray.eval.metrics import evaluate  # noqa: E402


def chexzero_loop(y: np.ndarray, s: np.ndarray, n_resamples: int) -> None:
    """CheXzero's bootstrap (one resample at a time, sklearn AUC) plus MedKLIP's max-F1 and ACC."""
    for i in range(n_resamples):
        idx = resample(np.arange(len(y)), replace=True, random_state=i)
        for j in range(y.shape[1]):
            yy, ss = y[idx, j], s[idx, j]
            roc_auc_score(yy, ss)
            p, r, t = precision_recall_curve(yy, ss)
            f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) != 0)
            ((ss >= t[int(np.argmax(f1[:-1]))]) == yy).mean()


def bench_bootstrap(n: int, labels: int, resamples: int) -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((n, labels)) < 0.3).astype(float)
    s = np.round(rng.random((n, labels)) + 0.4 * y, 3)
    t0 = time.perf_counter()
    with PeakMemory() as mem:
        evaluate(y, s, [f"l{j}" for j in range(labels)], n_bootstrap=resamples)
    fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    chexzero_loop(y, s, resamples)
    slow = time.perf_counter() - t0
    print(f"bootstrap: {resamples} resamples x {n} images x {labels} labels (AUC, max-F1 threshold, ACC)")
    print(f"  vectorised (pairaug):       {fast:.3f} s   peak RSS {mem.peak_mib:.0f} MiB")
    print(f"  per-resample loop (sklearn): {slow:.3f} s")
    print(f"  speed-up: {slow / fast:.1f}x")


def bench_embedding(n_images: int, preset: str, gpu: bool, batch: int) -> None:
    import pandas as pd

    from pairaug_ray import images
    from pairaug_ray.config import PhantomCorpusConfig, RayConfig, parse_config
    from pairaug_ray.corpora.phantom import build_phantom
    from pairaug_ray.eval.datasets import from_manifest
    from pairaug_ray.eval.zeroshot import ZeroShotModel
    from pairaug_ray.models.clip import build_clip, make_processor, save_clip
    from pairaug_ray.pipeline.evaluate import embed_images
    from pairaug_ray.runtime import init_ray

    init_ray(RayConfig(object_store_memory_mb=500))
    with tempfile.TemporaryDirectory() as tmp:
        patients = max(4, n_images // 3)
        build_phantom(PhantomCorpusConfig(patients=patients, size=256), f"{tmp}/corpus")
        data = from_manifest(f"{tmp}/corpus", ["Edema"], split=None)
        data.frame = data.frame.head(n_images).reset_index(drop=True)
        clip = build_clip(preset)
        model_dir = save_clip(clip, make_processor(int(clip.config.vision_config.image_size)), f"{tmp}/clip")
        # Plain: decode, preprocess and embed in one process.
        model = ZeroShotModel(model_dir, use_gpu=gpu)
        t0 = time.perf_counter()
        uris = data.frame["image_uri"].tolist()
        for i in range(0, len(uris), batch):
            model.embed_images([images.read_image(u) for u in uris[i : i + batch]])
        plain = len(uris) / (time.perf_counter() - t0)
        cfg = parse_config(
            {
                "evaluate": {
                    "batch_size": batch,
                    "num_cpus": 1.0,
                    "num_gpus": 1.0 if gpu else 0.0,
                    "max_actors": 1 if gpu else 2,
                }
            }
        )
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            embs, kept = embed_images(cfg, data, [model_dir])
            ray_rate = len(kept) / (time.perf_counter() - t0)
        assert isinstance(kept, pd.DataFrame) and embs[0].shape[0] == len(uris)
    print(f"embedding: {len(uris)} phantom images, {preset} CLIP, batch {batch}, {'GPU' if gpu else 'CPU'}")
    print(f"  plain loop (decode + preprocess + embed): {plain:.1f} images/s")
    print(
        f"  Ray Data EmbedImages actors:              {ray_rate:.1f} images/s  (ratio {ray_rate / plain:.2f}, "
        f"incl. actor start-up; peak RSS {mem.peak_mib:.0f} MiB)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="images in the bootstrap benchmark")
    ap.add_argument("--labels", type=int, default=5)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--images", type=int, default=256, help="images in the embedding benchmark (0: skip)")
    ap.add_argument("--preset", default="tiny", choices=["tiny", "vit-b-32", "vit-b-16"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--gpu", action="store_true")
    args = ap.parse_args()
    bench_bootstrap(args.n, args.labels, args.resamples)
    if args.images:
        bench_embedding(args.images, args.preset, args.gpu, args.batch)


if __name__ == "__main__":
    main()
