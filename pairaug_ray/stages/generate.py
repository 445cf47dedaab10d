"""Image generation as Ray Data stages on (GPU) actor pools (PairAug step 2).

`expand_image_tasks` turns each rewritten report (origin inter or intra, or a report as written,
which InterAug's pool draws like a rewrite) into one task per image
(`images_per_report` for InterAug, `samples` for IntraAug), with the new `pair_id` derived from
(rewrite row, image index) so that reruns skip finished images.

`GenerateInter` draws the new report with the Stable Diffusion pipeline (batched; every image has
its own generator seeded from its pair id, so an image does not depend on its batch-mates' seeds).
`GenerateIntra` edits the original report's image towards the new report with prompt-to-prompt
(pairaug_ray.p2p), one source/target pair per pipeline call from one shared initial latent: drawn
from the seed (source "generated", as PairAug) or the DDIM inversion of the real image ("real").

The model loads once per actor. A batch that runs out of memory is retried in halves down to one
image; an image that still fails becomes a row error; the rest of the batch proceeds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import ray
import torch

from pairaug_ray import images, schema, storage
from pairaug_ray.config import GenerateConfig
from pairaug_ray.models.diffusion import (
    CLIP_CONTEXT,
    default_size,
    load_sd_pipeline,
    prompt_tokens,
    to_grey_uint8,
)
from pairaug_ray.models.refs import resolve_model
from pairaug_ray.pairs import IMAGES_DIR
from pairaug_ray.stages.base import Resources, StagePlan
from pairaug_ray.stages.rewrite import row_seed
from pairaug_ray.text.demographics import draw_demographics, generation_prompt
from pairaug_ray.text.prompt_text import without_denials

# Columns an image row inherits from its rewrite row.
_CARRIED = (
    schema.PATIENT_ID,
    schema.STUDY_ID,
    schema.VIEW,
    schema.REPORT,
    *schema.LABEL_COLUMNS,
    schema.SPLIT,
    schema.ORIGIN,
    schema.PARENT_ID,
    schema.SOURCE_REPORT,
    schema.SOURCE_IMAGE_URI,
    schema.SOURCE_KIND,
    *schema.DEMOGRAPHIC_COLUMNS,
)


def branch_of(origin: str | None) -> str | None:
    """The generate branch that makes a rewrite row's image: inter draws every text-to-image origin
    (rewritten, or a report as written), intra edits."""
    if origin in schema.TEXT_TO_IMAGE_ORIGINS:
        return schema.ORIGIN_INTER
    return schema.ORIGIN_INTRA if origin == schema.ORIGIN_INTRA else None


def branch_origins(branches: tuple[str, ...]) -> list[str]:
    """The rewrite origins the configured branches draw."""
    return [o for o in (*schema.TEXT_TO_IMAGE_ORIGINS, schema.ORIGIN_INTRA) if branch_of(o) in branches]


def image_pair_id(rewrite_id: str, index: int) -> str:
    return schema.make_pair_id(rewrite_id, "image", index)


def expand_image_tasks(
    batch: pa.Table, *, cfg: GenerateConfig, done: frozenset[str] = frozenset()
) -> pa.Table:
    rows = []
    for r in batch.to_pylist():
        branch = branch_of(r[schema.ORIGIN])
        if branch not in cfg.branches:
            continue
        n = cfg.inter.images_per_report if branch == schema.ORIGIN_INTER else cfg.intra.samples
        for k in range(n):
            pid = image_pair_id(r[schema.PAIR_ID], k)
            if pid in done:
                continue
            row = {c: r.get(c) for c in _CARRIED}
            row.update({schema.PAIR_ID: pid, schema.REWRITE_ID: r[schema.PAIR_ID], schema.SAMPLE_INDEX: k})
            target = cfg.prompt.target
            if target is not None and branch == schema.ORIGIN_INTER:
                # A new patient: attributes drawn from the target, recorded as what the prompt said.
                drawn = draw_demographics(pid, target.sex, target.race, target.age_bands)
                row.update({c: drawn[c] for c in schema.DEMOGRAPHIC_COLUMNS if drawn[c] is not None})
            # An IntraAug edit is the source patient's image, changed: re-identifiable by design; a
            # report drawn as written keeps the patient's own words.
            row[schema.DERIVED_FROM_PATIENT] = r[schema.ORIGIN] in (
                schema.ORIGIN_INTRA,
                schema.ORIGIN_AS_WRITTEN,
            )
            rows.append(row)
    return schema.rows_to_table(rows)


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError | MemoryError) or "out of memory" in str(e).lower()


class _DiffusionStage:
    """One pipeline per actor, and what both branches do around it."""

    stage = "generate"

    def __init__(
        self,
        cfg: GenerateConfig,
        model_ref: str,
        cache_dir: str,
        run_seed: int,
        out_root: str,
        scheduler: str | None = None,
    ):
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        # Truncation and similar per-prompt warnings are recorded in provenance instead; loading bars
        # from every actor would drown Ray Data's own progress bars.
        diffusers_logging.set_verbosity_error()
        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
        self.cfg = cfg
        self.run_seed = run_seed
        self.model = resolve_model(model_ref, cache_dir)
        self.scheduler = scheduler or cfg.scheduler
        if cfg.num_gpus == 0:
            torch.set_num_threads(max(1, int(cfg.num_cpus)))
        self.pipe = load_sd_pipeline(
            self.model.path,
            revision=self.model.revision,
            scheduler=self.scheduler,
            dtype=cfg.dtype,
            use_gpu=cfg.num_gpus > 0,
        )
        # Read once: diffusers finds a pipeline's device and dtype by walking every module, which
        # cost more per row than drawing a 32 px image (bench/scale.py's profile).
        self.device = str(self.pipe.device)
        self.dtype = str(self.pipe.unet.dtype).removeprefix("torch.")
        self.height = cfg.height or default_size(self.pipe)
        self.width = cfg.width or default_size(self.pipe)
        self.image_dir = storage.join(out_root, IMAGES_DIR)
        self.attempts = 1
        # Which node and GPUs drew the image: how the pool spread over the cluster, read back per
        # row. Outside Ray (a notebook, a plain loop) there is none, and asking would start a Ray.
        self.gpu_ids, self.node_id = [], None
        if ray.is_initialized():
            self.gpu_ids = [str(g) for g in ray.get_gpu_ids()]
            self.node_id = ray.get_runtime_context().get_node_id()

    def seed(self, row: dict[str, Any]) -> int:
        return row_seed(self.run_seed, row[schema.PAIR_ID], 0)

    def save(self, image: np.ndarray) -> str:
        return images.write_png(to_grey_uint8(image), self.image_dir)[0]

    def save_all(self, drawn: list[np.ndarray]) -> list[str]:
        """A batch's images, written together (concurrent PUTs on S3, one round trip a batch)."""
        return [uri for uri, _ in images.write_pngs([to_grey_uint8(x) for x in drawn], self.image_dir)]

    def prompt(self, row: dict[str, Any], report: str) -> str:
        """What the pipeline is prompted with for `report` of this row's patient (generate.prompt)."""
        if not self.cfg.prompt.demographics:
            return report
        return generation_prompt(report, row.get(schema.SEX), row.get(schema.AGE), row.get(schema.RACE))

    def truncation(self, prompt: str) -> int:
        """How many tokens the text encoder drops from `prompt` (recorded, never silent)."""
        return max(0, prompt_tokens(self.pipe, prompt) - CLIP_CONTEXT)

    def finish(
        self,
        row: dict[str, Any],
        *,
        error: str | None,
        attempts: int,
        started: float,
        params: dict[str, Any],
        prompt: str | None = None,
    ) -> None:
        row[schema.STATUS] = schema.STATUS_ERROR if error else schema.STATUS_OK
        row[schema.ERROR] = error
        if error:
            row[schema.IMAGE_URI] = None
        row[schema.PROVENANCE] = schema.make_provenance(
            row[schema.ORIGIN],
            model_id=self.model.ref,
            model_revision=self.model.revision,
            prompt=prompt if prompt is not None else self.prompt(row, row.get(schema.REPORT) or ""),
            seed=self.seed(row),
            params={
                "scheduler": self.scheduler,
                "height": self.height,
                "width": self.width,
                "dtype": self.dtype,
                "device": self.device,
                "gpu_ids": self.gpu_ids,
                "node_id": self.node_id,
                **params,
            },
            started_at=datetime.fromtimestamp(started, UTC),
            backend="diffusers",
            attempts=attempts,
            latency_s=time.time() - started,
        )

    def run_chunks(self, rows: list[dict], fn: Callable[[list[dict]], None], size: int) -> None:
        for i in range(0, len(rows), size):
            self._attempt(rows[i : i + size], fn, attempts=1)

    def _attempt(self, chunk: list[dict], fn: Callable[[list[dict]], None], attempts: int) -> None:
        started = time.time()
        self.attempts = attempts  # read by fn when it finishes its rows
        try:
            fn(chunk)
        except Exception as e:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if len(chunk) > 1:
                # Out of memory: halve the batch. Any other failure: isolate the row that causes it.
                parts = (
                    [chunk[: len(chunk) // 2], chunk[len(chunk) // 2 :]]
                    if _is_oom(e)
                    else [[r] for r in chunk]
                )
                for part in parts:
                    self._attempt(part, fn, attempts + 1)
                return
            kind = "out of memory" if _is_oom(e) else type(e).__name__
            self.finish(
                chunk[0], error=f"{kind}: {str(e)[:300]}", attempts=attempts, started=started, params={}
            )


class GenerateInter(_DiffusionStage):
    """InterAug: text-to-image of the rewritten report."""

    @classmethod
    def plan(cls, cfg: GenerateConfig, **kwargs: Any) -> StagePlan:
        return StagePlan(
            schema.ORIGIN_INTER,
            cls,
            {"cfg": cfg, **kwargs},
            batch_size=cfg.inter.batch_size,
            resources=Resources(cpus=cfg.num_cpus, gpus=cfg.num_gpus),
            actors=(cfg.min_actors, cfg.max_actors),
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        self.run_chunks(rows, self._draw, self.cfg.inter.batch_size)
        return schema.rows_to_table(rows)

    def _draw(self, rows: list[dict]) -> None:
        ic = self.cfg.inter
        started = time.time()
        generators = [torch.Generator("cpu").manual_seed(self.seed(r)) for r in rows]
        text = without_denials if self.cfg.prompt.drop_denials else (lambda report: report)
        prompts = [self.prompt(r, text(r[schema.REPORT])) for r in rows]
        out = self.pipe(
            prompts,
            num_inference_steps=ic.num_inference_steps,
            guidance_scale=ic.guidance_scale,
            height=self.height,
            width=self.width,
            generator=generators,
            output_type="np",
        ).images
        for row, uri, prompt in zip(rows, self.save_all(list(out)), prompts, strict=True):
            row[schema.IMAGE_URI] = uri
            params = {
                "num_inference_steps": ic.num_inference_steps,
                "guidance_scale": ic.guidance_scale,
                "batch": len(rows),
                "prompt_tokens": (tokens := prompt_tokens(self.pipe, prompt)),
                "truncated_tokens": max(0, tokens - CLIP_CONTEXT),
            }
            self.finish(
                row, error=None, attempts=self.attempts, started=started, params=params, prompt=prompt
            )


class GenerateIntra(_DiffusionStage):
    """IntraAug: prompt-to-prompt edit from the original report (or the real image) to the new one."""

    @classmethod
    def plan(cls, cfg: GenerateConfig, **kwargs: Any) -> StagePlan:
        # One source/target pair per pipeline call: the controller holds one edit's attention maps.
        return StagePlan(
            schema.ORIGIN_INTRA,
            cls,
            {"cfg": cfg, **kwargs},
            batch_size=1,
            resources=Resources(cpus=cfg.num_cpus, gpus=cfg.num_gpus),
            actors=(cfg.min_actors, cfg.max_actors),
        )

    def __init__(self, cfg: GenerateConfig, model_ref: str, cache_dir: str, run_seed: int, out_root: str):
        # Inversion and sampling must walk the same (DDIM) trajectory for a real source.
        scheduler = "ddim" if cfg.intra.source == "real" else cfg.scheduler
        super().__init__(cfg, model_ref, cache_dir, run_seed, out_root, scheduler=scheduler)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        self.run_chunks(rows, self._edit, 1)
        return schema.rows_to_table(rows)

    def _edit(self, rows: list[dict]) -> None:
        from pairaug_ray import p2p

        (row,) = rows
        c = self.cfg.intra
        started = time.time()
        # The same patient on both sides: one prefix, so the prompts' token alignment is unchanged.
        prompts = [self.prompt(row, row[schema.SOURCE_REPORT]), self.prompt(row, row[schema.REPORT])]
        ctrl = p2p.make_controller(
            self.pipe,
            prompts,
            c.num_inference_steps,
            kind=c.controller,
            cross_replace=c.cross_replace,
            self_replace=c.self_replace,
            self_replace_max_tokens=c.self_replace_max_tokens,
            local_blend_words=list(c.local_blend_words) if c.local_blend_words else None,
            local_blend_threshold=c.local_blend_threshold,
            reweight=c.reweight or None,
        )
        real = None
        if c.source == "real":
            real = images.read_image(row[schema.SOURCE_IMAGE_URI])
            latent = p2p.ddim_invert(
                self.pipe,
                real,
                prompts[0],
                num_inference_steps=c.num_inference_steps,
                height=self.height,
                width=self.width,
            )
        else:
            latent = p2p.initial_latent(
                self.pipe, self.height, self.width, torch.Generator("cpu").manual_seed(self.seed(row))
            )
        result = p2p.run_with_controller(
            self.pipe,
            prompts,
            ctrl,
            num_inference_steps=c.num_inference_steps,
            guidance_scale=c.guidance_scale,
            height=self.height,
            width=self.width,
            latents=latent,
            output_type="np",
        )
        source_image, edited = result.images[0], result.images[1]
        row[schema.IMAGE_URI], row[schema.GENERATED_SOURCE_URI] = self.save_all([edited, source_image])
        params = {
            "num_inference_steps": c.num_inference_steps,
            "guidance_scale": c.guidance_scale,
            "controller": c.controller,
            "cross_replace": c.cross_replace,
            "self_replace": c.self_replace,
            "self_replace_max_tokens": c.self_replace_max_tokens,
            "local_blend_words": list(c.local_blend_words) if c.local_blend_words else None,
            "reweight": c.reweight or None,
            "hooked_layers": result.hooked_layers,
            "unet_calls": result.unet_calls,
            "source": c.source,
            "truncated_tokens": [self.truncation(p) for p in prompts],
        }
        if real is not None:
            params["inversion_reconstruction_error"] = round(p2p.reconstruction_error(real, source_image), 5)
        self.finish(row, error=None, attempts=self.attempts, started=started, params=params)
