"""The pair manifest: column names, value vocabularies and the Arrow schema.

Every module names columns through the constants here and nowhere else, so a
rename is one edit. A pair dataset is a Parquet manifest plus image files; one
row is one (image, report) pair, real or synthetic.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from pairaug_ray import __version__
from pairaug_ray.errors import UserError

# --- identity -----------------------------------------------------------------------------------------
PAIR_ID = "pair_id"  # stable, content-derived (see make_pair_id)
PATIENT_ID = "patient_id"
STUDY_ID = "study_id"
IMAGE_ID = "image_id"  # DICOM id for MIMIC, content hash for written PNGs
VIEW = "view"  # PA, AP, LATERAL, ... when known

# --- content ------------------------------------------------------------------------------------------
IMAGE_URI = "image_uri"  # absolute path / s3:// URI, or relative to the dataset root
REPORT = "report"  # the text used for training
FINDINGS = "findings"
IMPRESSION = "impression"

# --- bookkeeping --------------------------------------------------------------------------------------
SPLIT = "split"
ORIGIN = "origin"
PARENT_ID = "parent_id"  # the real pair a synthetic one came from
EPOCH_DRAW = "_epoch_draw"  # scratch: the per-epoch uniform draw of train.synthetic_ratio (never written)
PROVENANCE = "provenance"
STATUS = "status"
ERROR = "error"  # why a row failed or was skipped; null when STATUS is ok

# --- optional columns, added by the stage that knows them ------------------------------------------------
SEX = "sex"  # "F" / "M"; real pairs: from the corpus (MIMIC-IV patients); synthetic: what the prompt said
AGE = "age"  # whole years at the study
RACE = "race"  # WHITE, BLACK, ASIAN, HISPANIC or OTHER (text/demographics.py); null: unknown
DEMOGRAPHIC_COLUMNS = (SEX, AGE, RACE)
PHANTOM_STATE = "phantom_state"  # JSON ground truth of a phantom study (findings, severity, side)
SOURCE_REPORT = "source_report"  # synthetic rows: the parent's report the new one was rewritten from
SOURCE_IMAGE_URI = "source_image_uri"  # synthetic rows: the parent's (real) image
SAMPLE_INDEX = "sample_index"  # synthetic rows: which of the n samples drawn from one parent
REWRITE_ID = "rewrite_id"  # generated rows: the rewrite row whose report the image was drawn for
GENERATED_SOURCE_URI = "generated_source_uri"  # IntraAug rows: the image drawn for the original report
SCORE_A = "score_a"  # InterAug: S_a(image, report)
SCORE_S1 = "score_s1"  # IntraAug: sim(new image, new report)
SCORE_S2 = "score_s2"  # IntraAug: cos(image change, report change)
SCORE_S3 = "score_s3"  # IntraAug: sim(new image, original image)
SCORING = "scoring"  # JSON: scorer model, kind, mode, logit scale, original image used
KEPT = "kept"  # passed PairAug's pruning rule
PRUNING = "pruning"  # JSON: the thresholds (tau, epsilon, the global means) the kept flag came from
PRUNE_REASON = "prune_reason"  # why a scored pair was not kept (null when kept)
NEAREST_TRAIN_SIMILARITY = "nearest_train_similarity"  # InterAug: cosine to the nearest training image
# Synthetic rows made from a patient's own image (IntraAug edits, AugText's real image): that
# patient's data, re-identifiable by design, to be handled under the source's data agreement.
DERIVED_FROM_PATIENT = "derived_from_patient"
SOURCE_KIND = (
    "source_kind"  # SOURCE_KIND_PAIR or _REPORT: a report-only row, or what a synthetic row came from
)
SCORE_COLUMNS = (SCORE_A, SCORE_S1, SCORE_S2, SCORE_S3)
INTRA_SCORE_COLUMNS = (SCORE_S1, SCORE_S2, SCORE_S3)  # IntraAug's hybrid consistency scores

# --- columns of the other tables the project writes --------------------------------------------------
FEATURES = "features"  # report-card frames: an image encoder's feature vector
EMBED_ERROR = "embed_error"  # evaluation frames: why an image could not be embedded (null when it was)
LABEL_FILE_ID = "id"  # `pairaug label` output: the row id column when the input has none


def embedding_column(model_index: int) -> str:
    """Evaluation frames: the image embedding column of the `model_index`-th checkpoint."""
    return f"emb_{model_index}"


SPLITS = ("train", "validate", "test")

ORIGIN_REAL = "real"
ORIGIN_INTER = "inter"  # InterAug: new report drawn by text-to-image (a new patient)
ORIGIN_INTRA = "intra"  # IntraAug: the real image edited toward the new report (same patient)
ORIGIN_AUGTEXT = "augtext"  # paraphrased report beside the real image (AugText baseline)
# A real report drawn as written by text-to-image (report -> pair, a new patient): InterAug without
# the rewrite, the way report-only corpora become pairs.
ORIGIN_AS_WRITTEN = "as_written"
ORIGINS = (ORIGIN_REAL, ORIGIN_INTER, ORIGIN_INTRA, ORIGIN_AUGTEXT, ORIGIN_AS_WRITTEN)
# Drawn from noise by the text-to-image pipeline: InterAug's pool, S_a score and tau rule.
TEXT_TO_IMAGE_ORIGINS = (ORIGIN_INTER, ORIGIN_AS_WRITTEN)

# What a row was made from (SOURCE_KIND): a real image-report pair, or a report of a report-only
# corpus (corpus.reports), which has no image.
SOURCE_KIND_PAIR = "pair"
SOURCE_KIND_REPORT = "report"

STATUS_OK = "ok"
STATUS_SKIPPED = "skipped"  # deliberately not processed (e.g. report too short); kept, not dropped
STATUS_ERROR = "error"
STATUSES = (STATUS_OK, STATUS_SKIPPED, STATUS_ERROR)

# The 14 CheXpert observations, in the CheXpert label files' column order.
CHEXPERT_OBSERVATIONS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
# The five labels of the CheXpert competition test set, used by zero-shot evaluation.
CHEXPERT5 = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")

LABEL_POSITIVE, LABEL_NEGATIVE, LABEL_UNCERTAIN = 1, 0, -1  # null: not mentioned


def label_column(observation: str) -> str:
    """`"Pleural Effusion"` -> `"label_pleural_effusion"`."""
    if observation not in CHEXPERT_OBSERVATIONS:
        raise KeyError(
            f"unknown CheXpert observation {observation!r}; known: {', '.join(CHEXPERT_OBSERVATIONS)}"
        )
    return "label_" + re.sub(r"[^a-z0-9]+", "_", observation.lower()).strip("_")


LABEL_COLUMNS = tuple(label_column(o) for o in CHEXPERT_OBSERVATIONS)

PROVENANCE_TYPE = pa.struct(
    [
        pa.field("stage", pa.string()),  # which stage made the row: corpus, rewrite, inter, intra, ...
        pa.field("model_id", pa.string()),
        pa.field("model_revision", pa.string()),
        pa.field("prompt_hash", pa.string()),  # sha256 of the exact prompt/template sent
        pa.field("seed", pa.int64()),
        pa.field("params", pa.string()),  # JSON of the stage parameters that shaped this row
        pa.field("started_at", pa.timestamp("us", tz="UTC")),
        pa.field("finished_at", pa.timestamp("us", tz="UTC")),
        pa.field("code_version", pa.string()),
        pa.field("backend", pa.string()),  # e.g. rules, openai, local, vllm
        pa.field("attempts", pa.int32()),  # model calls made for this row, retries included
        pa.field("tokens_in", pa.int64()),
        pa.field("tokens_out", pa.int64()),
        pa.field("latency_s", pa.float64()),  # wall time spent on this row's model calls
    ]
)

CORE_FIELDS: tuple[pa.Field, ...] = (
    pa.field(PAIR_ID, pa.string(), nullable=False),
    pa.field(PATIENT_ID, pa.string()),
    pa.field(STUDY_ID, pa.string()),
    pa.field(IMAGE_ID, pa.string()),
    pa.field(VIEW, pa.string()),
    pa.field(IMAGE_URI, pa.string()),
    pa.field(REPORT, pa.string()),
    pa.field(FINDINGS, pa.string()),
    pa.field(IMPRESSION, pa.string()),
    *(pa.field(c, pa.int8()) for c in LABEL_COLUMNS),
    pa.field(SPLIT, pa.string()),
    pa.field(ORIGIN, pa.string()),
    pa.field(PARENT_ID, pa.string()),
    pa.field(PROVENANCE, PROVENANCE_TYPE),
    pa.field(STATUS, pa.string()),
    pa.field(ERROR, pa.string()),
)
CORE_COLUMNS = tuple(f.name for f in CORE_FIELDS)

# Columns that only some manifests carry. Later stages register theirs here, with their types, so
# that every writer casts them the same way.
OPTIONAL_FIELDS: dict[str, pa.Field] = {
    PHANTOM_STATE: pa.field(PHANTOM_STATE, pa.string()),
    SEX: pa.field(SEX, pa.string()),
    AGE: pa.field(AGE, pa.int16()),
    RACE: pa.field(RACE, pa.string()),
    SOURCE_REPORT: pa.field(SOURCE_REPORT, pa.string()),
    SOURCE_IMAGE_URI: pa.field(SOURCE_IMAGE_URI, pa.string()),
    SAMPLE_INDEX: pa.field(SAMPLE_INDEX, pa.int32()),
    REWRITE_ID: pa.field(REWRITE_ID, pa.string()),
    GENERATED_SOURCE_URI: pa.field(GENERATED_SOURCE_URI, pa.string()),
    **{c: pa.field(c, pa.float64()) for c in SCORE_COLUMNS},
    SCORING: pa.field(SCORING, pa.string()),
    KEPT: pa.field(KEPT, pa.bool_()),
    PRUNING: pa.field(PRUNING, pa.string()),
    PRUNE_REASON: pa.field(PRUNE_REASON, pa.string()),
    NEAREST_TRAIN_SIMILARITY: pa.field(NEAREST_TRAIN_SIMILARITY, pa.float64()),
    DERIVED_FROM_PATIENT: pa.field(DERIVED_FROM_PATIENT, pa.bool_()),
    SOURCE_KIND: pa.field(SOURCE_KIND, pa.string()),
}

MANIFEST_SCHEMA = pa.schema(CORE_FIELDS)


class ManifestSchemaError(UserError, ValueError):
    """A manifest table does not match the pair schema; the message names the column."""


def make_pair_id(*parts: Any) -> str:
    """A stable id derived from the content that defines a pair.

    Real pairs hash (patient, study, image, report); synthetic pairs hash (parent, origin, the
    parameters that made them, sample index). The same inputs give the same id on every run and
    machine, which is what makes reruns idempotent and resumable.
    """
    h = hashlib.sha256()
    for p in parts:
        h.update(b"\x1f")
        h.update(("" if p is None else str(p)).encode("utf-8"))
    return h.hexdigest()[:24]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_provenance(
    stage: str,
    *,
    model_id: str | None = None,
    model_revision: str | None = None,
    prompt: str | None = None,
    seed: int | None = None,
    params: Mapping[str, Any] | None = None,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    backend: str | None = None,
    attempts: int | None = None,
    tokens_in: int | None = None,
    tokens_out: int | None = None,
    latency_s: float | None = None,
    prompt_hash: str | None = None,
) -> dict[str, Any]:
    """A provenance struct for one row. `params` must not contain secrets: it is written verbatim.

    Pass the exact `prompt` text (it is hashed) or an already computed `prompt_hash`."""
    now = datetime.now(UTC)
    return {
        "stage": stage,
        "model_id": model_id,
        "model_revision": model_revision,
        "prompt_hash": prompt_hash or (text_hash(prompt) if prompt is not None else None),
        "seed": seed,
        "params": json.dumps(dict(params), sort_keys=True, default=str) if params else None,
        "started_at": started_at or now,
        "finished_at": finished_at or now,
        "code_version": __version__,
        "backend": backend,
        "attempts": attempts,
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "latency_s": latency_s,
    }


def field_for(name: str) -> pa.Field | None:
    if name in OPTIONAL_FIELDS:
        return OPTIONAL_FIELDS[name]
    try:
        return CORE_FIELDS[CORE_COLUMNS.index(name)]
    except ValueError:
        return None


def conform(table: pa.Table, *, all_optional: bool = False) -> pa.Table:
    """Cast `table` to the pair schema: core columns in canonical order, missing ones filled with nulls.

    Known optional columns are cast to their registered type; columns this module does not know
    are kept as they are, after the known ones, so user metadata survives a round trip. With
    `all_optional`, every registered optional column is present (null where unknown), so that
    tables from different stages share one schema and can be unioned.
    """
    n = table.num_rows
    names = set(table.column_names)
    if PAIR_ID not in names:
        raise ManifestSchemaError(f"manifest has no {PAIR_ID!r} column; columns: {sorted(names)}")
    arrays, fields = [], []
    extra = [c for c in table.column_names if c not in CORE_COLUMNS]
    if all_optional:
        extra = [*OPTIONAL_FIELDS, *(c for c in extra if c not in OPTIONAL_FIELDS)]
    for f in (*CORE_FIELDS, *(field_for(c) or table.schema.field(c) for c in extra)):
        if f.name in names:
            col = table.column(f.name)
            if col.type != f.type:
                try:
                    col = col.cast(f.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
                    raise ManifestSchemaError(
                        f"column {f.name!r} has type {col.type}, expected {f.type}: {e}"
                    ) from e
        else:
            col = pa.nulls(n, type=f.type)
        if not f.nullable and col.null_count:
            raise ManifestSchemaError(f"column {f.name!r} has {col.null_count} null value(s); it must be set")
        arrays.append(col)
        fields.append(f)
    _check_vocabularies(table)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _check_vocabularies(table: pa.Table) -> None:
    def bad_values(column: str, allowed: Iterable[Any]) -> list[Any]:
        if column not in table.column_names:
            return []
        allowed = set(allowed) | {None}
        return sorted({v for v in table.column(column).to_pylist() if v not in allowed}, key=str)

    for column, allowed in ((SPLIT, SPLITS), (STATUS, STATUSES)):
        if bad := bad_values(column, allowed):
            raise ManifestSchemaError(f"column {column!r} has values {bad}; allowed: {list(allowed)}")
    for column in LABEL_COLUMNS:
        if bad := bad_values(column, (1, 0, -1, 1.0, 0.0, -1.0)):
            raise ManifestSchemaError(
                f"column {column!r} has values {bad}; labels are 1 (positive), 0 (negative), "
                "-1 (uncertain) or null (not mentioned)"
            )


def rows_to_table(rows: list[Mapping[str, Any]]) -> pa.Table:
    """Build a conformed manifest table from row dicts (missing keys become nulls)."""
    if not rows:
        return MANIFEST_SCHEMA.empty_table()
    keys: list[str] = list(CORE_COLUMNS)
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    columns = {}
    for k in keys:
        f = field_for(k)
        values = [r.get(k) for r in rows]
        columns[k] = pa.array(values, type=f.type) if f is not None else pa.array(values)
    return conform(pa.table(columns))
