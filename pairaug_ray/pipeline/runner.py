"""One runner for every resumable stage (rewrite, generate, score, ...).

A resumable stage reads an input dataset and appends its rows to an output dataset while it
streams, so finished work is on disk before the job ends. Around the stage's own work the runner
does the same steps every time:

    1. refuse to mix rows made with other settings into the output (its `identity`)
    2. mark the output incomplete in dataset.json
    3. scan what a previous run finished (unreadable files of a killed write are removed)
    4. build the tasks not done yet, run the stage plans over them, append the rows
    5. finalize: exactly one row per pair_id; count outcomes from the same pass
    6. mark the output complete, with the outcome counts

`passes > 1` redoes rows that ended in an error in further passes (the vLLM back-end, whose engine
does not retry single requests). A job wires a stage in a few lines:

    run_resumable(ResumableStage(
        name="score", input=src, output=out, identity={...},
        todo=lambda done: read_manifest(src).filter(...),
        process=ScorePairs.plan(cfg.score, ...).apply,
    ))
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray

from pairaug_ray import progress, schema, storage
from pairaug_ray.config import ConfigError
from pairaug_ray.manifest import write_manifest
from pairaug_ray.pairs import read_info, write_info
from pairaug_ray.pipeline.common import outcome_line, status_counts
from pairaug_ray.resume import finalize, scan_output

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResumableStage:
    name: str  # "rewrite", "generate", "score": the key in dataset.json, the label on the terminal
    input: str
    output: str
    identity: dict[str, Any]  # the settings that shape each output row; a rerun must keep them
    todo: Callable[[frozenset[str]], ray.data.Dataset]  # the tasks left, given the pair ids done
    # tasks -> rows, called as process(tasks, counter), or process(tasks, counter, attempt) when
    # passes > 1: `counter` goes to the stage plans' apply (it counts the rows each stage makes).
    process: Callable[..., ray.data.Dataset]
    retry_errors: bool = True  # redo rows that ended in an error on a rerun
    passes: int = 1
    # How many tasks are left (a column read): the progress bar's total, and 0 skips the execution.
    expected: Callable[[frozenset[str]], int | None] | None = None
    noun: str = "rows"
    also_inputs: tuple[str, ...] = ()  # further inputs read beside `input` (the rewrite's reports)


def check_output_identity(out: str, stage: str, identity: dict[str, Any]) -> None:
    """Refuse to add rows made with other settings to an existing stage output."""
    recorded = read_info(out).get(stage)
    if recorded is not None and recorded != identity:
        diff = sorted(k for k in {*identity, *recorded} if recorded.get(k) != identity.get(k))
        raise ConfigError(
            f"{out} holds {stage} output made with other settings ({', '.join(diff)} differ); "
            f"set {stage}.output to a new location, or delete the old output to redo it"
        )


def run_resumable(stage: ResumableStage) -> dict[str, Any]:
    """Run `stage` into its output, resuming what a previous run left; returns the outcome counts."""
    out = stage.output
    check_output_identity(out, stage.name, stage.identity)
    info: dict[str, Any] = {stage.name: stage.identity, "input": stage.input}
    if stage.also_inputs:
        info["also_inputs"] = list(stage.also_inputs)
    write_info(out, {**info, "complete": False})
    inputs = " + ".join(progress.shown(i) for i in (stage.input, *stage.also_inputs))
    with progress.stage(stage.name, f"{inputs} -> {progress.shown(out)}") as shown:
        work: dict[str, int] = dict.fromkeys(progress.WORK_COUNTS, 0)
        done_at_start: int | None = None
        for attempt in range(1, stage.passes + 1):
            state = scan_output(out, retry_errors=stage.retry_errors)
            if state.removed_files:
                log.warning("removed %d partially written file(s) from %s", len(state.removed_files), out)
            if state.done or state.removed_files:
                cut = (
                    f"; removed {len(state.removed_files)} file(s) a kill cut short"
                    if state.removed_files
                    else ""
                )
                progress.say(
                    f"{'':<{progress.WIDTH}} resuming: {len(state.done)} {stage.noun} already done{cut}"
                )
            if done_at_start is None:
                done_at_start = len(state.done)
            expected = stage.expected(state.done) if stage.expected else None
            if expected != 0:  # nothing left (a rerun of a finished stage): no actors to start
                tasks = stage.todo(state.done)
                with progress.bar(stage.name, total=expected, unit=stage.noun) as counter:
                    rows = (
                        stage.process(tasks, counter, attempt)
                        if stage.passes > 1
                        else stage.process(tasks, counter)
                    )
                    write_manifest(rows, out, mode="append", info=info, counter=counter)
                if counter is not None:
                    for key in work:
                        work[key] += progress.last_counts.get(key, 0)
            report = finalize(out)
            if report.rows == 0:
                write_empty_manifest(out)
            if not status_counts(report.summary).get(schema.STATUS_ERROR):
                break
        summary = dict(report.summary)
        summary["finalize"] = {"rows": report.rows, "duplicates_removed": report.duplicates_removed}
        line = outcome_line(summary, stage.noun)
        redo = work_redone(work, new_rows=report.rows - (done_at_start or 0))
        if redo is not None:
            summary["work"] = redo
            if redo["redone"]:
                line += f"; {redo['redone_fraction']:.1%} of the work redone"
        write_info(out, {**info, "complete": True, "outcomes": summary})
        shown["line"] = line
    return summary


def write_empty_manifest(out: str) -> None:
    """A stage with nothing to do (an AugText-only job has no images to draw or score) still leaves
    a manifest, with no rows, so that the next stage reads an empty dataset instead of failing."""
    import io

    import pyarrow.parquet as pq

    from pairaug_ray.pairs import manifest_uri

    if storage.list_files(manifest_uri(out), ".parquet"):
        return
    buf = io.BytesIO()
    pq.write_table(schema.MANIFEST_SCHEMA.empty_table(), buf)
    storage.write_bytes(storage.join(manifest_uri(out), "empty.parquet"), buf.getvalue())


def work_redone(work: dict[str, int], new_rows: int) -> dict[str, Any] | None:
    """What a stage did again, from its work counts (progress.WORK_COUNTS) and the rows it added;
    None when it was not counted (no progress bar or file, or nothing to do).

    Two kinds, both in the stage's input rows: calls that began and never returned (their node was
    lost, or they failed and Ray retried them), and rows returned more often than they were added
    (a block Ray recomputed after its node was lost, a pass that redid errors)."""
    begun, finished, made = (work.get(key, 0) for key in progress.WORK_COUNTS)
    if not begun:
        return None
    lost = max(0, begun - finished)
    recomputed = max(0, made - new_rows) * (finished / made if made else 0.0)
    redone = lost + recomputed
    return {
        "begun": begun,
        "finished": finished,
        "made": made,
        "new_rows": new_rows,
        "redone": round(redone, 1),
        "redone_fraction": round(redone / begun, 4),
    }
