"""Phantom corpus throughput: the Ray Data build against a plain in-process loop, same run.

Both render the same patients and write the same PNGs (content-addressed, so the second writer
finds identical files); the Ray build also writes the Parquet manifest. Prints studies/s, the
ratio of the two, and the peak RSS of the process tree (driver plus Ray workers).

    .venv/bin/python bench/phantom.py --patients 300 --size 256 --num-cpus 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from memory import PeakMemory  # noqa: E402

from pairaug_ray.config import PhantomCorpusConfig, RayConfig  # noqa: E402
from pairaug_ray.corpora.phantom import build_phantom, render_batch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--num-cpus", type=int, default=2)
    args = ap.parse_args()
    cfg = PhantomCorpusConfig(patients=args.patients, size=args.size, seed=0)

    with tempfile.TemporaryDirectory() as tmp:
        with PeakMemory() as mem_plain:
            t0 = time.perf_counter()
            table = render_batch({"id": np.arange(cfg.patients)}, cfg, os.path.join(tmp, "plain"))
            plain_s = time.perf_counter() - t0
        studies = table.num_rows

        from pairaug_ray.runtime import init_ray

        with PeakMemory() as mem_ray:
            t0 = time.perf_counter()
            init_ray(RayConfig(num_cpus=args.num_cpus, object_store_memory_mb=512, progress_bars=False))
            startup_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            build_phantom(cfg, os.path.join(tmp, "ray"))
            ray_s = time.perf_counter() - t1

    print(f"phantom corpus: {cfg.patients} patients, {studies} studies at {cfg.size} px")
    print(
        f"  plain loop (1 process)      {plain_s:7.2f} s  {studies / plain_s:7.1f} studies/s  peak RSS {mem_plain.peak_mib:7.0f} MiB"
    )
    print(
        f"  Ray Data ({args.num_cpus} CPUs)           {ray_s:7.2f} s  {studies / ray_s:7.1f} studies/s  "
        f"peak RSS {mem_ray.peak_mib:7.0f} MiB (+{startup_s:.1f} s Ray start-up)"
    )
    print(
        f"  speed-up over the plain loop: {plain_s / ray_s:.2f}x (with start-up: {plain_s / (ray_s + startup_s):.2f}x)"
    )


if __name__ == "__main__":
    main()
