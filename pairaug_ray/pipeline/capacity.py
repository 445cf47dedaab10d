"""How many GPUs, nodes and hours a job needs: its work counted from the config, at measured rates.

The work is counted as the stages make it: every pair or report in the rewrite draw gets one task
per mode (`as_written` once, the rewrite modes `rewrite.n` times; a report without an image only
`inter` and `as_written`), InterAug draws `images_per_report` images per text-to-image task and
IntraAug makes `samples` edits per intra task; every image is scored. The rates are per worker, in
the steady state, from this repository's benchmarks (docs/benchmarks.md):

- GPU: one NVIDIA H200, fp16, the SD 1.5 / RoentGen-sized pipeline at 512 px and CheXzero's
  ViT-B/32 CLIP (`bench/gpu_throughput.py`, 2026-12-04, docs/gpu_throughput.json). Another GPU
  scales roughly with its fp16 throughput (an A100 about half an H200).
- CPU: one core of the project's 2-core machine (`bench/scale.py`'s plain baseline, 2026-12-04).

InterAug's rate is scaled linearly in steps and in pixels from the measured 512 px / 50 steps at
the configured batch size; an estimate for other sizes, exact at the measured settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from pairaug_ray.config import JobConfig

# InterAug images/s per H200 at 512 px, 50 PNDM steps, guidance 4, by prompts per pipeline call.
INTER_GPU_BY_BATCH = {1: 0.534, 8: 2.712, 16: 3.071, 32: 3.177}
INTER_GPU_STEPS, INTER_GPU_PIXELS = 50, 512 * 512
# IntraAug: one prompt-to-prompt edit per call (two prompts, 75 steps, refine controller).
INTRA_GPU_EDITS_PER_S, INTRA_GPU_STEPS = 0.3265, 75
# CheXzero's ViT-B/32 embedding one image and one text per pair, on the GPU (the model alone).
SCORE_GPU_PAIRS_PER_S = 9917.0
# Per CPU core: the rules rewriter (labelling each output for the quality checks), PNG decoding and
# encoding of 512 px images (scoring reads every image; generation writes it).
RULES_REWRITE_PER_CORE = 535.0
PNG_ENCODE_512_PER_CORE = 46.0
MEASURED_ON = "an H200 (bench/gpu_throughput.py, 2026-12-04)"


@dataclass(frozen=True)
class Work:
    stage: str
    units: int  # images, edits, pairs or rows
    unit: str
    rate: float  # units/s per worker
    worker: str  # "GPU" or "CPU core"
    note: str = ""

    @property
    def worker_hours(self) -> float:
        return self.units / self.rate / 3600 if self.rate else 0.0


def inter_rate(batch: int, steps: int, pixels: int) -> float:
    """InterAug images/s per GPU at this batch size, steps and image size."""
    sizes = sorted(INTER_GPU_BY_BATCH)
    lo = max((b for b in sizes if b <= batch), default=sizes[0])
    hi = min((b for b in sizes if b >= batch), default=sizes[-1])
    at_batch = (
        INTER_GPU_BY_BATCH[lo]
        if lo == hi
        else INTER_GPU_BY_BATCH[lo]
        + (INTER_GPU_BY_BATCH[hi] - INTER_GPU_BY_BATCH[lo]) * (batch - lo) / (hi - lo)
    )
    return at_batch * (INTER_GPU_STEPS / steps) * (INTER_GPU_PIXELS / pixels)


def count_tasks(cfg: JobConfig, pairs: int, reports: int) -> dict[str, int]:
    """Rewrite tasks per origin for `pairs` pairs and `reports` reports in the rewrite draw."""
    rc = cfg.rewrite
    per_parent = {m: (1 if m == "as_written" else rc.n) for m in rc.modes}
    share = rc.patient_fraction
    tasks = {m: round(pairs * share) * k for m, k in per_parent.items()}
    for m in ("inter", "as_written"):
        if m in per_parent:
            tasks[m] += round(reports * share) * per_parent[m]
    return tasks


def plan(cfg: JobConfig, pairs: int, reports: int) -> list[Work]:
    """The work of the augment job over `pairs` pairs and `reports` reports without images."""
    g = cfg.generate
    tasks = count_tasks(cfg, pairs, reports)
    size = (g.height or 512) * (g.width or 512)
    out: list[Work] = []
    model_rows = sum(n for m, n in tasks.items() if m != "as_written")
    if cfg.rewrite.backend == "rules":
        out.append(Work("rewrite", model_rows, "rows", RULES_REWRITE_PER_CORE, "CPU core"))
    else:
        out.append(
            Work(
                "rewrite",
                model_rows,
                "requests",
                0.0,
                "endpoint",
                f"one {cfg.rewrite.backend} request each (and a retry per failed check): the endpoint's throughput decides",
            )
        )
    images = (tasks.get("inter", 0) + tasks.get("as_written", 0)) * g.inter.images_per_report
    edits = tasks.get("intra", 0) * g.intra.samples
    if "inter" in g.branches and images:
        rate = inter_rate(g.inter.batch_size, g.inter.num_inference_steps, size)
        out.append(
            Work(
                "generate: InterAug",
                images,
                "images",
                rate,
                "GPU",
                f"{g.inter.num_inference_steps} steps, {g.height}x{g.width}, batch {g.inter.batch_size}",
            )
        )
    if "intra" in g.branches and edits:
        rate = (
            INTRA_GPU_EDITS_PER_S
            * (INTRA_GPU_STEPS / g.intra.num_inference_steps)
            * (INTER_GPU_PIXELS / size)
        )
        out.append(
            Work(
                "generate: IntraAug",
                edits,
                "edits",
                rate,
                "GPU",
                f"{g.intra.num_inference_steps} steps, {g.intra.samples} per report",
            )
        )
    drawn = (images if "inter" in g.branches else 0) + (edits if "intra" in g.branches else 0)
    if drawn:
        out.append(
            Work(
                "generate: PNG encoding",
                drawn,
                "images",
                PNG_ENCODE_512_PER_CORE * INTER_GPU_PIXELS / size,
                "CPU core",
            )
        )
        if cfg.score.num_gpus:
            out.append(
                Work(
                    "score",
                    drawn,
                    "pairs",
                    SCORE_GPU_PAIRS_PER_S,
                    "GPU",
                    "the model alone; decoding is on the CPU",
                )
            )
    return out


def format_plan(work: list[Work], gpus: float | None, cpus: float | None) -> list[str]:
    """Lines a person reads: each stage's worker-hours, and the hours on the GPUs and CPUs given."""
    lines = []
    gpu_h = cpu_h = 0.0
    for w in work:
        if not w.rate:
            lines.append(f"{w.stage}: {w.units:,} {w.unit}: {w.note}")
            continue
        lines.append(
            f"{w.stage}: {w.units:,} {w.unit} at {w.rate:,.3g} {w.unit}/s per {w.worker}"
            f"{f' ({w.note})' if w.note else ''} = {w.worker_hours:,.1f} {w.worker}-hours"
        )
        if w.worker == "GPU":
            gpu_h += w.worker_hours
        else:
            cpu_h += w.worker_hours
    if gpus:
        lines.append(f"on {gpus:g} GPUs: about {gpu_h / gpus:,.1f} h of GPU stages")
    if cpus:
        lines.append(f"on {cpus:g} CPU cores: about {cpu_h / cpus:,.1f} h of CPU work (alongside)")
    lines.append(f"GPU rates measured on {MEASURED_ON}; InterAug scaled by steps and pixels")
    return lines
