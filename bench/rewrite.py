"""Rewrite-stage throughput against an OpenAI-compatible server on loopback with a fixed latency.

Part 1 (throughput): the `openai` back-end (one actor, `concurrency` requests in flight) against
the ideal concurrency / latency, beside Ray's own `ray.data.llm` HTTP request processor (the
alternative a user would pick) on the same server in the same run. One request per row
(max_attempts 1, no faults), so rows/s = requests/s.

Part 2 (memory): peak RSS of the process tree (driver, Ray workers and the server thread) while
streaming N reports through the stage into Parquet, for growing N. Flat means streaming works.

    .venv/bin/python bench/rewrite.py --rows 6400 --latency 0.2 --concurrency 64
    .venv/bin/python bench/rewrite.py --memory 10000 100000 --latency 0.005
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import ray  # noqa: E402
from memory import PeakMemory  # noqa: E402
from ray.data import ActorPoolStrategy  # noqa: E402

from pairaug_ray import schema  # noqa: E402
from pairaug_ray.config import RayConfig, parse_config  # noqa: E402
from pairaug_ray.manifest import write_manifest  # noqa: E402
from pairaug_ray.runtime import init_ray  # noqa: E402
from pairaug_ray.stages.rewrite import OpenAIRewriter  # noqa: E402
from pairaug_ray.testing.fake_openai import FakeOpenAIServer, FaultPlan  # noqa: E402

_EFFUSION = re.compile(r"There is a \w+ \w+ pleural effusion\.")
SIDES = ("left", "right")
SIZES = ("small", "moderate", "large")


def task_rows(batch: dict[str, np.ndarray]) -> pa.Table:
    """Rewrite tasks with varied phantom-style reports (>= 20 words each)."""
    rows = []
    for i in batch["id"].tolist():
        report = (
            f"There is a {SIZES[i % 3]} {SIDES[i % 2]} pleural effusion. Heart size is normal. No pneumothorax. "
            f"No focal consolidation. No pulmonary edema. Study {i} compared with the prior examination."
        )
        rows.append(
            {schema.PAIR_ID: f"t{i:08d}", schema.ORIGIN: schema.ORIGIN_INTER, schema.SOURCE_REPORT: report}
        )
    return schema.rows_to_table(rows)


def tasks(n: int) -> ray.data.Dataset:
    # Blocks of 256 rows, as the rewrite job makes them (rewrite.rows_per_file), so output streams.
    return ray.data.range(n, override_num_blocks=max(1, n // 256)).map_batches(
        task_rows, batch_format="numpy"
    )


def cheap_inter_rewrite(system: str, user: str, seed: int) -> str:
    """A valid InterAug answer for the benchmark's reports at string-replacement cost: in a real
    deployment the server is another machine, so its CPU must not eat the client's two cores."""
    return _EFFUSION.sub("No pleural effusion.", user, count=1)


def drain(ds: ray.data.Dataset) -> tuple[int, float, float]:
    """Rows, total seconds, and steady-state rows/s (from the first output batch to the last)."""
    t0 = time.perf_counter()
    first = None
    rows = rows_after_first = 0
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        now = time.perf_counter()
        if first is None:
            first = now
        else:
            rows_after_first += batch.num_rows
        rows += batch.num_rows
    total = time.perf_counter() - t0
    steady = rows_after_first / (time.perf_counter() - first) if first and rows_after_first else float("nan")
    return rows, total, steady


def ours(base_url: str, n: int, concurrency: int, batch_size: int, actors: int = 1) -> ray.data.Dataset:
    cfg = parse_config(
        {
            "rewrite": {
                "backend": "openai",
                "max_attempts": 1,
                "min_words": 0,
                "batch_size": batch_size,
                "openai": {
                    "base_url": base_url,
                    "api_key_env": None,
                    "concurrency": concurrency // actors,
                    "model": "fake",
                    "timeout_s": 30,
                },
            }
        }
    ).rewrite
    return tasks(n).map_batches(
        OpenAIRewriter,
        fn_constructor_kwargs={"cfg": cfg, "run_seed": 0},
        compute=ActorPoolStrategy(size=actors, max_concurrent_calls_per_actor=4),
        batch_size=batch_size,
        batch_format="pyarrow",
        num_cpus=0.5,
    )


def rays_http_processor(base_url: str, n: int, batch_size: int) -> ray.data.Dataset:
    from ray.data.llm import HttpRequestProcessorConfig, build_processor

    config = HttpRequestProcessorConfig(
        url=f"{base_url}/chat/completions",
        headers={"Content-Type": "application/json"},
        batch_size=batch_size,
        concurrency=1,
        max_retries=2,
    )
    system = "Following is an original chest X-Ray report. Generate one possible augmentation ..."
    processor = build_processor(
        config,
        preprocess=lambda row: {
            "payload": {
                "model": "fake",
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": row[schema.SOURCE_REPORT]},
                ],
                "temperature": 0.5,
                "max_tokens": 300,
            }
        },
        postprocess=lambda row: {"text": row["http_response"]["choices"][0]["message"]["content"]},
    )
    return processor(tasks(n).select_columns([schema.PAIR_ID, schema.SOURCE_REPORT]))


def throughput(args: argparse.Namespace) -> None:
    ideal = args.concurrency / args.latency
    print(
        f"server latency {args.latency * 1000:.0f} ms, concurrency {args.concurrency}: ideal {ideal:.0f} rows/s"
    )
    with FakeOpenAIServer(FaultPlan(latency_s=args.latency), responder=cheap_inter_rewrite) as server:
        for name, make in (
            (
                f"pairaug openai, {args.actors} actor(s)",
                lambda: ours(server.base_url, args.rows, args.concurrency, args.concurrency, args.actors),
            ),
            (
                "ray.data.llm HTTP processor",
                lambda: rays_http_processor(server.base_url, args.ray_rows, args.concurrency),
            ),
        ):
            with PeakMemory() as mem:
                server.max_in_flight = 0
                rows, total, steady = drain(make())
            print(
                f"  {name:<30} {rows} rows in {total:6.1f} s: {rows / total:6.1f} rows/s overall, "
                f"{steady:6.1f} rows/s steady = {steady / ideal:.2f} of ideal; max in flight {server.max_in_flight}; "
                f"peak RSS {mem.peak_mib:.0f} MiB"
            )


def memory(args: argparse.Namespace) -> None:
    with FakeOpenAIServer(FaultPlan(latency_s=args.latency), responder=cheap_inter_rewrite) as server:
        for n in args.memory:
            with tempfile.TemporaryDirectory() as out, PeakMemory() as mem:
                t0 = time.perf_counter()
                write_manifest(ours(server.base_url, n, args.concurrency, 256), out)
                elapsed = time.perf_counter() - t0
            print(
                f"  streamed {n:>7} reports to Parquet in {elapsed:6.1f} s ({n / elapsed:6.0f} rows/s): peak RSS {mem.peak_mib:.0f} MiB"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=6400)
    ap.add_argument(
        "--ray-rows", type=int, default=1600, help="rows for Ray's HTTP processor (it is much slower)"
    )
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=64, help="requests in flight in total")
    ap.add_argument("--actors", type=int, default=1, help="client actors sharing --concurrency")
    ap.add_argument(
        "--memory", type=int, nargs="*", default=None, metavar="N", help="run the memory part for these sizes"
    )
    ap.add_argument("--num-cpus", type=int, default=2)
    args = ap.parse_args()
    init_ray(RayConfig(num_cpus=args.num_cpus, object_store_memory_mb=512, progress_bars=False))
    if args.memory:
        memory(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()
