"""The `generate` job: InterAug and IntraAug images for the rewritten reports, resumably.

    read_manifest(rewrites) -> ok rows of origin inter (and as_written) / intra
      -> expand_image_tasks (one task per image; skips what is done)
      -> inter: GenerateInter on its actor pool | intra: GenerateIntra on its actor pool
      -> append to <output>/manifest/ (PNGs under <output>/images/) -> finalize -> outcome counts

Each branch is an actor pool of `min_actors`..`max_actors` actors with `num_gpus` each, so the
pool grows with the queue and, on KubeRay, the autoscaler adds GPU pods for the pending actors.
"""

from __future__ import annotations

import logging
from typing import Any

import ray
from ray.data.expressions import col

from pairaug_ray import schema, storage
from pairaug_ray.config import ConfigError, GenerateConfig, GeneratePromptConfig, JobConfig
from pairaug_ray.manifest import read_manifest
from pairaug_ray.pairs import read_columns
from pairaug_ray.pipeline.runner import ResumableStage, run_resumable
from pairaug_ray.runtime import init_ray, started_local_ray
from pairaug_ray.stages.generate import (
    GenerateInter,
    GenerateIntra,
    branch_of,
    branch_origins,
    expand_image_tasks,
    image_pair_id,
)

log = logging.getLogger(__name__)


def model_ref(cfg: JobConfig) -> str:
    """The pipeline to use: generate.model, else models.diffusion, else the tiny one if built."""
    from pairaug_ray.pipeline.prepare import stage_model_ref

    return stage_model_ref(cfg, "diffusion", cfg.generate.model, "generate.model")


def check_local_cpus(cfg: JobConfig) -> None:
    """On a fixed-size (local) Ray, actor pools that take every CPU starve the read and write tasks and
    the job hangs (Ray issue #44687); say so instead. Not on a cluster: an idle autoscaling cluster
    has 0 CPUs until the autoscaler adds workers for the job's own demand."""
    if not started_local_ray():
        return
    g = cfg.generate
    total = ray.cluster_resources().get("CPU", 0)
    reserved = len(g.branches) * g.min_actors * g.num_cpus
    # Ray Data's read, repartition and write tasks each need one whole CPU.
    if reserved > total - 1:
        raise ConfigError(
            f"the generation actor pools reserve {reserved:g} of this Ray's {total:g} CPUs at start "
            f"({len(g.branches)} branches x min_actors {g.min_actors} x num_cpus {g.num_cpus:g}), leaving none for "
            "reading and writing: lower generate.num_cpus (e.g. 0.5) or min_actors, or give Ray more CPUs"
        )
    if len(g.branches) * g.max_actors * g.num_cpus > total - 1:
        log.warning(
            "generate.max_actors x num_cpus can reserve all %g CPUs of this Ray; if the job stalls, lower them",
            total,
        )


def prompt_identity(g: GenerateConfig) -> dict[str, Any]:
    """The generate.prompt settings that change this output's prompts, set away from the defaults.

    Left out when they change nothing: the InterAug-only keys in an IntraAug-only output (so a
    study's real-source edits are reused when only InterAug's prompts change), and every key at
    its default (so outputs written before these keys existed still resume)."""
    inter_only = set() if schema.ORIGIN_INTER in g.branches else {"target", "drop_denials"}
    default = GeneratePromptConfig().model_dump(mode="json")
    return {
        key: value
        for key, value in g.prompt.model_dump(mode="json").items()
        if key not in inter_only and value != default[key]
    }


def output_identity(cfg: JobConfig, model: str) -> dict[str, Any]:
    g = cfg.generate
    identity = {
        "model": model,
        "scheduler": g.scheduler,
        "size": [g.height, g.width],
        "dtype": g.dtype,
        "inter": g.inter.model_dump(mode="json", exclude={"images_per_report", "batch_size"}),
        "intra": g.intra.model_dump(mode="json", exclude={"samples"}),
        "seed": cfg.run.seed,
    }
    prompt = prompt_identity(g)
    return {**identity, "prompt": prompt} if prompt else identity


def expected_images(cfg: JobConfig, src: str, done: frozenset[str]) -> int:
    """How many images are left to make (for the progress bar), from a column read of the input."""
    g = cfg.generate
    table = read_columns(src, [schema.PAIR_ID, schema.STATUS, schema.ORIGIN])
    per_branch = {schema.ORIGIN_INTER: g.inter.images_per_report, schema.ORIGIN_INTRA: g.intra.samples}
    return sum(
        image_pair_id(pid, k) not in done
        for pid, status, origin in zip(
            *(table.column(c).to_pylist() for c in table.column_names), strict=True
        )
        if status == schema.STATUS_OK and branch_of(origin) in g.branches
        for k in range(per_branch[branch_of(origin)])
    )


def generate_job(
    cfg: JobConfig, *, input_root: str | None = None, output_root: str | None = None
) -> dict[str, Any]:
    """Images for the rewrites under `input_root` (default: the rewrite output) into `output_root`."""
    init_ray(cfg.ray)
    check_local_cpus(cfg)
    g = cfg.generate
    src = storage.absolute(input_root or cfg.rewrite_dir())
    out = storage.absolute(output_root or cfg.generate_dir())
    model = model_ref(cfg)
    args = {"model_ref": model, "cache_dir": cfg.models.cache_dir, "run_seed": cfg.run.seed, "out_root": out}
    plans = [
        stage.plan(g, **args)
        for branch, stage in ((schema.ORIGIN_INTER, GenerateInter), (schema.ORIGIN_INTRA, GenerateIntra))
        if branch in g.branches
    ]

    def todo(done: frozenset[str]) -> ray.data.Dataset:
        rewrites = read_manifest(src).filter(
            expr=(col(schema.STATUS) == schema.STATUS_OK)
            & col(schema.ORIGIN).is_in(branch_origins(g.branches))
        )
        tasks = rewrites.map_batches(
            expand_image_tasks, fn_kwargs={"cfg": g, "done": done}, batch_format="pyarrow"
        )
        return tasks.repartition(target_num_rows_per_block=g.rows_per_file)

    def process(tasks: ray.data.Dataset, counter: Any) -> ray.data.Dataset:
        # One actor pool per branch; the pools run side by side and their rows meet at the writer.
        branches = [
            plan.apply(tasks.filter(expr=col(schema.ORIGIN).is_in(branch_origins((plan.name,)))), counter)
            for plan in plans
        ]
        return branches[0] if len(branches) == 1 else branches[0].union(*branches[1:])

    return run_resumable(
        ResumableStage(
            name="generate",
            input=src,
            output=out,
            identity=output_identity(cfg, model),
            todo=todo,
            process=process,
            retry_errors=g.retry_errors,
            expected=lambda done: expected_images(cfg, src, done),
            noun="images",
        )
    )
