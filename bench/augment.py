"""The whole `augment` job: pairs per second against its stages' model time, and memory against size.

For each corpus size (phantom patients) the job runs end to end on a fresh output, with tiny
models on CPU. Then, in the same run, each stage's own callable (the rules rewriter, the InterAug
and IntraAug diffusion stages, the scorer) is called directly in this process, without Ray, over
exactly the data the job processed: the sum of those times is the work the job cannot avoid.

    efficiency = sum of stage model time / job time (validate .. prune, without corpus building)

1.0 means the pipeline wastes nothing; above 1.0, stages overlap (Ray runs them concurrently);
below, the job spends time on scheduling, actor start-up, I/O and the extra passes. Peak memory is
the RSS of this process and all Ray workers; the goal is that it stays flat as the corpus grows
(every stage streams).

    .venv/bin/python bench/augment.py --patients 10 20 40 --size 64 --steps 10
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

import pyarrow as pa  # noqa: E402
import ray  # noqa: E402
from memory import PeakMemory  # noqa: E402

from pairaug_ray import schema  # noqa: E402
from pairaug_ray.config import parse_config  # noqa: E402
from pairaug_ray.corpora.phantom import build_phantom  # noqa: E402
from pairaug_ray.manifest import read_manifest  # noqa: E402
from pairaug_ray.models.tiny import make_tiny_models  # noqa: E402
from pairaug_ray.pipeline.augment import augment_job  # noqa: E402
from pairaug_ray.stages.generate import GenerateInter, GenerateIntra, expand_image_tasks  # noqa: E402
from pairaug_ray.stages.rewrite import RulesRewriter, expand_tasks  # noqa: E402
from pairaug_ray.stages.score import ScorePairs  # noqa: E402


def job(tmp: str, corpus: str, models: dict, size: int, steps: int, out: str):
    return parse_config(
        {
            "run": {"name": "bench", "output_dir": out, "seed": 0},
            "ray": {"num_cpus": 2, "object_store_memory_mb": 512, "progress_bars": False},
            "corpus": {"kind": "manifest", "manifest": corpus},
            "models": {
                "diffusion": models["diffusion"],
                "scorer": models["scorer"],
                "cache_dir": os.path.join(tmp, "cache"),
            },
            "rewrite": {"modes": ["inter", "intra", "paraphrase"], "min_words": 10},
            "generate": {
                "height": size,
                "width": size,
                "num_gpus": 0,
                "num_cpus": 0.5,
                "max_actors": 1,
                "inter": {"num_inference_steps": steps, "batch_size": 4},
                "intra": {"num_inference_steps": steps},
            },
            "score": {"num_cpus": 0.5, "max_actors": 1},
            "prune": {"tau": -0.12},
            "augment": {"examples": 0},
        }
    )


def table(root: str) -> pa.Table:
    return pa.Table.from_pylist(read_manifest(root).take_all())


def stage_model_time(cfg, models: dict, scratch: str) -> dict[str, float]:
    """Each stage's callable over the job's own data, in this process, no Ray."""
    times = {}
    validated = table(cfg.validated_dir())
    train = validated.filter(pa.compute.equal(validated[schema.SPLIT], "train"))
    tasks = expand_tasks(
        train.filter(pa.compute.equal(train[schema.STATUS], "ok")), cfg=cfg.rewrite, done=frozenset()
    )
    t0 = time.perf_counter()
    RulesRewriter(cfg.rewrite, cfg.run.seed)(tasks)
    times["rewrite"] = time.perf_counter() - t0

    rewrites = table(cfg.rewrite_dir())
    image_tasks = expand_image_tasks(
        rewrites.filter(pa.compute.equal(rewrites[schema.STATUS], "ok")), cfg=cfg.generate
    )
    g = cfg.generate
    for branch, cls, batch in (("inter", GenerateInter, g.inter.batch_size), ("intra", GenerateIntra, 1)):
        rows = image_tasks.filter(pa.compute.equal(image_tasks[schema.ORIGIN], branch))
        stage = cls(g, models["diffusion"], cfg.models.cache_dir, cfg.run.seed, os.path.join(scratch, branch))
        t0 = time.perf_counter()
        for i in range(0, rows.num_rows, batch):
            stage(rows.slice(i, batch))
        times[branch] = time.perf_counter() - t0

    generated = table(cfg.generate_dir())
    scorer = ScorePairs(cfg.score, models["scorer"], cfg.models.cache_dir)
    t0 = time.perf_counter()
    for i in range(0, generated.num_rows, cfg.score.batch_size):
        scorer(generated.slice(i, cfg.score.batch_size))
    times["score"] = time.perf_counter() - t0
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, nargs="+", default=[10, 20, 40])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    from pairaug_ray.config import PhantomCorpusConfig, RayConfig
    from pairaug_ray.runtime import init_ray

    init_ray(RayConfig(num_cpus=2, object_store_memory_mb=512, progress_bars=False))
    print(f"augment job, tiny models on CPU ({os.cpu_count()} cores), {args.size} px, {args.steps} steps")
    print(
        f"{'patients':>8} {'real':>5} {'pairs':>6} {'job s':>7} {'pairs/s':>8} {'model s':>8} {'efficiency':>10} {'peak RSS':>9}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        models = make_tiny_models(os.path.join(tmp, "models"), seed=0)
        for n in args.patients:
            corpus = os.path.join(tmp, f"corpus{n}")
            build_phantom(PhantomCorpusConfig(patients=n, size=128, seed=1), corpus)
            cfg = job(tmp, corpus, models, args.size, args.steps, os.path.join(tmp, f"run{n}"))
            with PeakMemory() as mem:
                summary = augment_job(cfg)
            seconds = summary["seconds"]
            job_s = seconds["total"] - seconds["prepare"]
            pairs = summary["stages"]["generate"].get("ok", 0)
            model = stage_model_time(cfg, models, os.path.join(tmp, f"plain{n}"))
            stages = ", ".join(f"{k} {v:.1f}" for k, v in model.items())
            print(
                f"{n:>8} {summary['stages']['validate']['rows']:>5} {pairs:>6} {job_s:>7.1f} {pairs / job_s:>8.2f} "
                f"{sum(model.values()):>8.1f} {sum(model.values()) / job_s:>10.2f} {mem.peak_mib:>7.0f} MiB"
            )
            print(
                f"{'':>8} job stages: {', '.join(f'{k} {v:.1f}' for k, v in seconds.items() if k not in ('total', 'prepare'))}; "
                f"plain model time: {stages}"
            )
    ray.shutdown()


if __name__ == "__main__":
    main()
