"""Report rewriting as Ray Data stages (PairAug step 1).

`expand_tasks` turns each real pair into one task row per (mode, sample index), with the new row's
`pair_id` already derived from (parent, mode, sample), so a rerun can skip what is done before any
model is called. Reports under `min_words` become `skipped` rows here.

A callable class per back-end then fills the report: `RulesRewriter` (no model), `OpenAIRewriter`
(async, one HTTP client per actor) and `LocalRewriter` (a transformers causal LM per actor). Every
candidate goes through the quality checks; a failing one is generated again up to
`max_attempts` times, then recorded as an error with its reason. Transport failures (after the
client's own retries) are recorded as errors at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import textwrap
import time
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from pairaug_ray import schema
from pairaug_ray.config import RewriteConfig, RewriteMode
from pairaug_ray.errors import UserError
from pairaug_ray.pairs import patient_subset
from pairaug_ray.stages.base import Resources, StagePlan
from pairaug_ray.text.labeler import label_report
from pairaug_ray.text.quality import assess_rewrite, clean_output, word_count

log = logging.getLogger(__name__)

MODE_ORIGIN = {
    "inter": schema.ORIGIN_INTER,
    "intra": schema.ORIGIN_INTRA,
    "paraphrase": schema.ORIGIN_AUGTEXT,
    "as_written": schema.ORIGIN_AS_WRITTEN,
}
# What a report without an image can become: InterAug draws a new patient from text alone, while
# IntraAug edits and AugText keeps the real image.
REPORT_ONLY_MODES = ("inter", "as_written")
ORIGIN_MODE = {v: k for k, v in MODE_ORIGIN.items()}


class MissingSecretError(UserError, RuntimeError):
    """The environment variable that should hold a secret is not set."""


def rewrite_pair_id(parent_id: str, mode: str, sample_index: int) -> str:
    return schema.make_pair_id(parent_id, "rewrite", mode, sample_index)


def row_seed(run_seed: int, pair_id: str, attempt: int) -> int:
    """A per-row, per-attempt seed in [0, 2**31): reruns draw the same, retries draw anew."""
    digest = hashlib.sha256(f"{run_seed}/{pair_id}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def in_rewrite_draw(
    cfg: RewriteConfig, patient_ids: list[Any], pair_ids: list[Any] | None = None
) -> list[bool]:
    """Which of these rows' patients rewrite.patient_fraction's seeded draw includes (all at 1.0).
    A row without a patient id (a report of a report-only corpus) is drawn as a patient of its own."""
    if cfg.patient_fraction >= 1.0:
        return [True] * len(patient_ids)
    keys = [
        p if p is not None or pair_ids is None else f"row:{pair_ids[i]}" for i, p in enumerate(patient_ids)
    ]
    return list(patient_subset(keys, cfg.patient_fraction, cfg.subset_seed))


def task_keys(cfg: RewriteConfig, source_kind: str | None) -> list[tuple[str, int]]:
    """(mode, sample index) of every task of one parent row: rewrite.modes x rewrite.n, as_written
    once (a copy), and for a report without an image only the modes that need none."""
    modes = [m for m in cfg.modes if source_kind != schema.SOURCE_KIND_REPORT or m in REPORT_ONLY_MODES]
    return [(mode, k) for mode in modes for k in range(1 if mode == "as_written" else cfg.n)]


def expand_tasks(batch: pa.Table, *, cfg: RewriteConfig, done: frozenset[str] = frozenset()) -> pa.Table:
    """One task row per (real pair or report, mode, sample index) that is not done yet, for the
    parents in rewrite.patient_fraction's draw. as_written rows are finished here: the report is
    copied, no model is called."""
    rows = []
    parents = batch.to_pylist()
    drawn = in_rewrite_draw(
        cfg, [p.get(schema.PATIENT_ID) for p in parents], [p.get(schema.PAIR_ID) for p in parents]
    )
    for parent in (p for p, keep in zip(parents, drawn, strict=True) if keep):
        report = parent.get(schema.REPORT) or ""
        source_kind = parent.get(schema.SOURCE_KIND) or schema.SOURCE_KIND_PAIR
        for mode, k in task_keys(cfg, source_kind):
            pid = rewrite_pair_id(parent[schema.PAIR_ID], mode, k)
            if pid in done:
                continue
            row = {
                schema.PAIR_ID: pid,
                schema.PATIENT_ID: parent.get(schema.PATIENT_ID),
                schema.STUDY_ID: parent.get(schema.STUDY_ID),
                schema.VIEW: parent.get(schema.VIEW),
                # A paraphrase keeps the real image (AugText); InterAug/IntraAug images come later.
                schema.IMAGE_URI: parent.get(schema.IMAGE_URI) if mode == "paraphrase" else None,
                schema.SPLIT: parent.get(schema.SPLIT),
                schema.ORIGIN: MODE_ORIGIN[mode],
                schema.PARENT_ID: parent[schema.PAIR_ID],
                schema.SOURCE_REPORT: report,
                schema.SOURCE_IMAGE_URI: parent.get(schema.IMAGE_URI),
                schema.SAMPLE_INDEX: k,
                schema.SOURCE_KIND: source_kind,
                **{c: parent.get(c) for c in schema.DEMOGRAPHIC_COLUMNS},
            }
            n = word_count(report) if report.strip() else 0
            if mode == "as_written":
                _copy_report(row, parent, report)
            elif n < cfg.min_words:
                row[schema.STATUS] = schema.STATUS_SKIPPED
                row[schema.ERROR] = f"skipped: the report has {n} words (< min_words {cfg.min_words})"
            rows.append(row)
    return schema.rows_to_table(rows)


def _copy_report(row: dict[str, Any], parent: dict[str, Any], report: str) -> None:
    """Finish an as_written task: the parent's report and labels, unchanged."""
    now = datetime.now(UTC)
    labelled = any(parent.get(c) is not None for c in schema.LABEL_COLUMNS)
    row.update(
        {c: parent.get(c) for c in schema.LABEL_COLUMNS} if labelled else label_report(report).as_row()
    )
    row[schema.REPORT] = report
    row[schema.STATUS], row[schema.ERROR] = schema.STATUS_OK, None
    # The pair's text is the patient's own report, word for word: that patient's data.
    row[schema.DERIVED_FROM_PATIENT] = True
    row[schema.PROVENANCE] = schema.make_provenance(
        "rewrite", params={"mode": "as_written"}, started_at=now, finished_at=now, backend="copy", attempts=0
    )


class _Rewriter:
    """What all back-ends share: prompts, quality checks, and how a finished row is written."""

    backend = "base"

    def __init__(self, cfg: RewriteConfig, run_seed: int, model_id: str, model_revision: str | None = None):
        self.cfg = cfg
        self.run_seed = run_seed
        self.model_id = model_id
        self.model_revision = model_revision

    def max_words(self, source: str) -> int:
        # An LLM is asked for at most `word_limit` words. The rule rewriter keeps the input's sentence
        # structure, so its natural limit is the input's length.
        limit = (
            self.cfg.word_limit if self.backend != "rules" else max(self.cfg.word_limit, len(source.split()))
        )
        return int(limit * self.cfg.word_tolerance)

    def check(self, row: dict[str, Any], text: str) -> str | None:
        """The quality verdict on `text` for this row; remembers the labels for `finish`."""
        source = row[schema.SOURCE_REPORT]
        if "_source_labels" not in row:
            row["_source_labels"] = label_report(source)
        reason, labels = assess_rewrite(
            source,
            text,
            ORIGIN_MODE[row[schema.ORIGIN]],
            max_words=self.max_words(source),
            source_labels=row["_source_labels"],
        )
        row["_labels"] = (text, labels)
        return reason

    def finish(
        self,
        row: dict[str, Any],
        *,
        text: str | None,
        reason: str | None,
        attempts: int,
        seed: int,
        started: datetime,
        tokens_in: int | None = None,
        tokens_out: int | None = None,
        latency_s: float | None = None,
    ) -> dict[str, Any]:
        mode: RewriteMode = ORIGIN_MODE[row[schema.ORIGIN]]  # type: ignore[assignment]
        template = self.cfg.prompt(mode)
        row.pop("_source_labels", None)
        # IntraAug will edit this patient's image and AugText keeps it: the patient's data.
        row[schema.DERIVED_FROM_PATIENT] = mode != "inter"
        cached_text, labels = row.pop("_labels", (None, None))
        if reason is None and text:
            row[schema.REPORT] = text
            row.update(
                (labels if cached_text == text and labels is not None else label_report(text)).as_row()
            )
            row[schema.STATUS], row[schema.ERROR] = schema.STATUS_OK, None
        else:
            last = f"; last output: {textwrap.shorten(text, 160)!r}" if text else ""
            row[schema.STATUS], row[schema.ERROR] = schema.STATUS_ERROR, f"{reason}{last}"
        row[schema.PROVENANCE] = schema.make_provenance(
            "rewrite",
            model_id=self.model_id,
            model_revision=self.model_revision,
            prompt_hash=template.digest() if self.backend != "rules" else None,
            seed=seed,
            params={
                "mode": mode,
                "prompt_version": template.version if self.backend != "rules" else None,
                "temperature": self.cfg.temperature,
                "top_p": self.cfg.top_p,
                "max_tokens": self.cfg.max_tokens,
                "word_limit": self.cfg.word_limit,
            },
            started_at=started,
            finished_at=datetime.now(UTC),
            backend=self.backend,
            attempts=attempts,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            latency_s=latency_s,
        )
        return row


class RulesRewriter(_Rewriter):
    """The deterministic rule-based rewriter (pairaug_ray.text.rewrite)."""

    backend = "rules"

    @classmethod
    def plan(cls, cfg: RewriteConfig, run_seed: int) -> StagePlan:
        return StagePlan(
            "rewrite",
            cls,
            {"cfg": cfg, "run_seed": run_seed},
            batch_size=cfg.batch_size,
            actors=(1, cfg.rules.actors),
        )

    def __init__(self, cfg: RewriteConfig, run_seed: int):
        from pairaug_ray.text.rewrite import RULES_VERSION

        super().__init__(cfg, run_seed, model_id=f"rules/{RULES_VERSION}")

    def __call__(self, batch: pa.Table) -> pa.Table:
        from pairaug_ray.text.rewrite import rewrite_report

        out = []
        for row in batch.to_pylist():
            if row.get(schema.STATUS) is not None:  # skipped, or finished (as_written) when expanded
                out.append(row)
                continue
            started, t0 = datetime.now(UTC), time.perf_counter()
            mode = ORIGIN_MODE[row[schema.ORIGIN]]
            text, reason, seed, attempt = None, "no attempt made", 0, 0
            for attempt in range(1, self.cfg.max_attempts + 1):
                seed = row_seed(self.run_seed, row[schema.PAIR_ID], attempt)
                text = rewrite_report(
                    row[schema.SOURCE_REPORT],
                    mode,
                    seed,
                    min_flips=self.cfg.rules.min_flips,
                    max_flips=self.cfg.rules.max_flips,
                ).text
                if (reason := self.check(row, text)) is None:
                    break
            out.append(
                self.finish(
                    row,
                    text=text,
                    reason=reason,
                    attempts=attempt,
                    seed=seed,
                    started=started,
                    latency_s=time.perf_counter() - t0,
                )
            )
        return schema.rows_to_table(out)


class OpenAIRewriter(_Rewriter):
    """An OpenAI-compatible endpoint through the `openai` client, many requests in flight per actor.

    Ray Data runs an async `__call__` on the actor's event loop and overlaps several batches, so the
    client's semaphore, not the batch boundary, decides how many requests are in flight."""

    backend = "openai"

    @classmethod
    def plan(cls, cfg: RewriteConfig, run_seed: int) -> StagePlan:
        assert cfg.openai is not None
        return StagePlan(
            "rewrite",
            cls,
            {"cfg": cfg, "run_seed": run_seed},
            batch_size=cfg.batch_size,
            resources=Resources(cpus=0.5),  # the actor mostly waits on the network
            actors=(1, cfg.openai.actors),
            # Several blocks in flight per actor, so the client's semaphore stays full across block
            # boundaries instead of draining to the slowest request of each block.
            calls_per_actor=4,
        )

    def __init__(self, cfg: RewriteConfig, run_seed: int):
        from pairaug_ray.models.openai_chat import OpenAIChatClient

        oc = cfg.openai
        assert oc is not None
        super().__init__(cfg, run_seed, model_id=oc.model)
        key = None
        if oc.api_key_env:
            key = os.environ.get(oc.api_key_env)
            if not key:
                raise MissingSecretError(
                    f"environment variable {oc.api_key_env} is not set: it must hold the API key for "
                    f"{oc.base_url} (rewrite.openai.api_key_env; set it to null for servers without auth)"
                )
        self.client = OpenAIChatClient(oc, key, seed=run_seed)

    async def __call__(self, batch: pa.Table) -> pa.Table:
        rows = await asyncio.gather(*(self._one(r) for r in batch.to_pylist()))
        return schema.rows_to_table(list(rows))

    def __del__(self) -> None:
        # Ray Data deletes the UDF when its actor shuts down gracefully: close the connections then.
        client = getattr(self, "client", None)
        if client is not None:
            try:
                client.close()
            except Exception as e:  # never raise from a finaliser; the process is ending anyway
                log.debug("closing the OpenAI client: %s", e)

    async def _one(self, row: dict[str, Any]) -> dict[str, Any]:
        if row.get(schema.STATUS) is not None:  # skipped, or finished (as_written) when expanded
            return row
        started = datetime.now(UTC)
        mode = ORIGIN_MODE[row[schema.ORIGIN]]
        system, user = self.cfg.prompt(mode).render(row[schema.SOURCE_REPORT])
        calls = tokens_in = tokens_out = 0
        latency, text, reason, seed = 0.0, None, "no attempt made", 0
        for attempt in range(1, self.cfg.max_attempts + 1):
            seed = row_seed(self.run_seed, row[schema.PAIR_ID], attempt)
            res = await self.client.chat(
                system,
                user,
                temperature=self.cfg.temperature,
                top_p=self.cfg.top_p,
                max_tokens=self.cfg.max_tokens,
                seed=seed,
            )
            calls += res.attempts
            tokens_in += res.tokens_in
            tokens_out += res.tokens_out
            latency += res.latency_s
            if res.error is not None:
                text, reason = None, res.error
                break
            text = clean_output(res.text)
            if (reason := self.check(row, text)) is None:
                break
        return self.finish(
            row,
            text=text,
            reason=reason,
            attempts=calls,
            seed=seed,
            started=started,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            latency_s=latency,
        )


class LocalRewriter(_Rewriter):
    """A Hugging Face causal LM (local folder, s3:// or hub id) generating in batches on one device."""

    backend = "local"

    @classmethod
    def plan(cls, cfg: RewriteConfig, run_seed: int, cache_dir: str) -> StagePlan:
        lc = cfg.local
        assert lc is not None
        return StagePlan(
            "rewrite",
            cls,
            {"cfg": cfg, "run_seed": run_seed, "cache_dir": cache_dir},
            batch_size=cfg.batch_size,
            resources=Resources(cpus=1, gpus=lc.num_gpus),
            actors=(1, lc.actors),
        )

    def __init__(self, cfg: RewriteConfig, run_seed: int, cache_dir: str):
        from pairaug_ray.models.local_lm import LocalChatModel
        from pairaug_ray.models.refs import resolve_model

        lc = cfg.local
        assert lc is not None
        resolved = resolve_model(lc.model, cache_dir)
        super().__init__(cfg, run_seed, model_id=lc.model, model_revision=resolved.revision)
        self.model = LocalChatModel(
            resolved.path, revision=resolved.revision, dtype=lc.dtype, use_gpu=lc.num_gpus > 0
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        state = {
            i: {
                "calls": 0,
                "tin": 0,
                "tout": 0,
                "lat": 0.0,
                "text": None,
                "reason": "no attempt made",
                "seed": 0,
            }
            for i, r in enumerate(rows)
            if r.get(schema.STATUS) is None  # not skipped, nor finished (as_written) when expanded
        }
        started = datetime.now(UTC)
        pending = list(state)
        for attempt in range(1, self.cfg.max_attempts + 1):
            if not pending:
                break
            for start in range(0, len(pending), self.cfg.local.batch_size):  # type: ignore[union-attr]
                chunk = pending[start : start + self.cfg.local.batch_size]  # type: ignore[union-attr]
                prompts = [
                    self.cfg.prompt(ORIGIN_MODE[rows[i][schema.ORIGIN]]).render(rows[i][schema.SOURCE_REPORT])
                    for i in chunk
                ]
                # One seed per generate() call: sampling noise is shared by the rows generated together.
                seed = row_seed(self.run_seed, rows[chunk[0]][schema.PAIR_ID], attempt)
                outs = self.model.generate(
                    prompts,
                    temperature=self.cfg.temperature,
                    top_p=self.cfg.top_p,
                    max_new_tokens=self.cfg.max_tokens,
                    seed=seed,
                )
                for i, out in zip(chunk, outs, strict=True):
                    s = state[i]
                    text = clean_output(out.text)
                    s.update(text=text, reason=self.check(rows[i], text), seed=seed)
                    s["calls"] += 1
                    s["tin"] += out.tokens_in
                    s["tout"] += out.tokens_out
                    s["lat"] += out.latency_s
            pending = [i for i in pending if state[i]["reason"] is not None]
        for i, s in state.items():
            self.finish(
                rows[i],
                text=s["text"],
                reason=s["reason"],
                attempts=s["calls"],
                seed=s["seed"],
                started=started,
                tokens_in=s["tin"],
                tokens_out=s["tout"],
                latency_s=s["lat"],
            )
        return schema.rows_to_table(rows)
