"""The `vllm` rewriting back-end: Ray Data's LLM processor with a vLLM engine on GPU actors.

For clusters that host the model themselves. `ray.data.llm` is imported only when this back-end
is used, so the rest of the project runs without vLLM installed.

Quality retries work in passes: pass k runs the processor over the tasks not yet done (seed from
attempt k) and appends its rows; rows that failed the checks are written as errors and redone by
the next pass; `finalize` keeps the best row per pair. Engine errors on a row are recorded on that
row (`should_continue_on_error`) instead of failing the job.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pairaug_ray import schema
from pairaug_ray.config import RewriteConfig
from pairaug_ray.errors import UserError
from pairaug_ray.stages.rewrite import ORIGIN_MODE, _Rewriter, row_seed
from pairaug_ray.text.quality import clean_output


class BackendUnavailableError(UserError, RuntimeError):
    """The vLLM back-end cannot run here (vLLM or a GPU is missing)."""


def _ray_llm():
    try:
        import ray.data.llm as llm
    except ImportError as e:  # pragma: no cover - depends on the Ray build
        raise BackendUnavailableError(
            "the vllm rewrite back-end needs Ray's LLM extras and vLLM on the GPU workers "
            "(pip install 'ray[llm]' vllm); use the openai back-end against a vLLM server otherwise"
        ) from e
    return llm


def processor_config(cfg: RewriteConfig, model_path: str) -> Any:
    """The vLLMEngineProcessorConfig for `cfg.vllm` (whole GPUs per replica, as vLLM needs)."""
    v = cfg.vllm
    if v is None:
        raise ValueError("rewrite.vllm is not configured")
    llm = _ray_llm()
    return llm.vLLMEngineProcessorConfig(
        model_source=model_path,
        engine_kwargs={
            "tensor_parallel_size": v.tensor_parallel_size,
            "max_model_len": v.max_model_len,
            **v.engine_kwargs,
        },
        concurrency=v.replicas,
        batch_size=v.batch_size,
        accelerator_type=v.accelerator_type,
        should_continue_on_error=True,
    )


class Preprocess:
    """Task row -> the processor's input: chat messages and sampling parameters (seeded per row)."""

    def __init__(self, cfg: RewriteConfig, run_seed: int, attempt: int):
        self.cfg, self.run_seed, self.attempt = cfg, run_seed, attempt

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        system, user = self.cfg.prompt(ORIGIN_MODE[row[schema.ORIGIN]]).render(row[schema.SOURCE_REPORT])
        return {
            **row,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "sampling_params": {
                "temperature": self.cfg.temperature,
                "top_p": self.cfg.top_p,
                "max_tokens": self.cfg.max_tokens,
                "seed": row_seed(self.run_seed, row[schema.PAIR_ID], self.attempt),
            },
        }


class Postprocess(_Rewriter):
    """Processor output -> a finished manifest row (quality-checked, labelled, with provenance)."""

    backend = "vllm"

    def __init__(self, cfg: RewriteConfig, run_seed: int, attempt: int, model_id: str):
        super().__init__(cfg, run_seed, model_id=model_id)
        self.attempt = attempt

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        sampling = row.pop("sampling_params", None) or {}
        row.pop("messages", None)
        error = row.pop("__inference_error__", None)
        text = clean_output(row.pop("generated_text", None))
        tokens_in = len(row.pop("prompt_token_ids", None) or []) or None
        tokens_out = len(row.pop("generated_tokens", None) or []) or None
        out = {k: v for k, v in row.items() if k in schema.CORE_COLUMNS or k in schema.OPTIONAL_FIELDS}
        reason = f"engine error: {error}" if error else self.check(out, text)
        return self.finish(
            out,
            text=text,
            reason=reason,
            attempts=self.attempt,
            seed=int(sampling.get("seed") or 0),
            started=datetime.now(UTC),
            tokens_in=tokens_in,
            tokens_out=tokens_out,
        )


def build_processor(config: Any, preprocess: Callable, postprocess: Callable) -> Callable:
    llm = _ray_llm()
    build = getattr(llm, "build_processor", None) or llm.build_llm_processor  # renamed in Ray 2.52
    return build(config, preprocess=preprocess, postprocess=postprocess)
