"""Job configuration: one YAML file per job, validated into typed, frozen models.

Unknown keys and wrong types are rejected with the dotted key path and the reason, so a typo
fails before any work starts. `--set a.b=c` overrides are applied to the raw YAML before
validation, so they are checked exactly like the file. Each stage receives only its own slice
(`cfg.corpus`, `cfg.ray`, ...), never the whole job.

Paths may be local or `s3://` URIs. S3 endpoint and credentials come from the standard AWS
environment variables; nothing secret belongs in a config file, and a few key names that look
like secrets are refused outright.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from pairaug_ray.errors import UserError


class ConfigError(UserError, ValueError):
    """A configuration file or override is invalid. The message is meant for a person."""


def _check_uri(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", value)
    if m and m.group(1).lower() not in ("s3", "file"):
        raise ValueError(f"unsupported scheme {m.group(1)!r}: use a local path or an s3:// URI")
    if m and m.group(1).lower() == "s3" and len(value) <= len("s3://"):
        raise ValueError("an s3:// URI needs a bucket")
    return value


# A local path or s3:// URI.
Uri = Annotated[str, AfterValidator(_check_uri)]

# Which text of a report is trained on (see pairaug_ray.corpora.common.report_text).
ReportText = Literal["pairaug", "chexzero", "sections"]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class RunConfig(StrictModel):
    """Where a job writes and how it is named."""

    name: str = Field("pairaug", min_length=1, description="Run name; used in output paths and logs.")
    output_dir: Uri = Field("runs/pairaug", description="Root of everything the job writes (local or s3://).")
    seed: int = Field(0, description="Base seed; every random choice in the job derives from it.")


class RayConfig(StrictModel):
    """How to reach Ray. `address: null` starts a private local Ray on 127.0.0.1."""

    address: str | None = Field(
        None, description="'auto' inside a cluster/job, ray://host:10001, or null for local."
    )
    num_cpus: int | None = Field(None, ge=1, description="Local Ray only: CPUs to offer (default: all).")
    num_gpus: int | None = Field(None, ge=0, description="Local Ray only: GPUs to offer (default: detected).")
    object_store_memory_mb: int | None = Field(
        1024,
        ge=78,
        description="Local Ray only: object store cap; Ray's default (30% of RAM) is too greedy on laptops.",
    )
    progress_bars: bool = Field(
        True,
        description="A progress bar per stage on the terminal (rows, rows/s, ETA); the stage lines stay.",
    )
    cpu_work_off_gpu_nodes: bool = Field(
        True,
        description="CPU tasks and actors never run on (or start) nodes labelled pairaug.io/node-kind=gpu, "
        "as the chart labels its GPU groups; they wait for CPU nodes instead. Unlabelled nodes take any work.",
    )


class PhantomCorpusConfig(StrictModel):
    """The built-in synthetic chest radiograph corpus (see pairaug_ray.corpora.phantom)."""

    patients: int = Field(60, ge=1)
    studies_per_patient: tuple[int, int] = Field(
        (2, 4), description="Inclusive range of studies per patient."
    )
    size: int = Field(256, ge=64, le=2048, description="Image side in pixels.")
    seed: int = 0
    split_fractions: tuple[float, float, float] = Field(
        (0.8, 0.1, 0.1), description="Patient-disjoint train/validate/test fractions."
    )
    bit_depth: Literal[8, 16] = Field(8, description="PNG bit depth of the rendered radiographs.")
    text: ReportText = Field(
        "sections", description="Report text to train on: sections, pairaug or chexzero."
    )
    demographic_anatomy: bool = Field(
        False,
        description="Let sex and age shape the anatomy (narrower female thorax, lower diaphragm and thinner "
        "soft tissue with age), so subgroups differ in appearance as real ones do. Off: the world the "
        "recorded study measured (sex and age are still drawn and recorded).",
    )

    @model_validator(mode="after")
    def _check(self) -> PhantomCorpusConfig:
        lo, hi = self.studies_per_patient
        if not 1 <= lo <= hi:
            raise ValueError(f"studies_per_patient must be (min, max) with 1 <= min <= max, got {lo, hi}")
        if abs(sum(self.split_fractions) - 1.0) > 1e-6 or min(self.split_fractions) < 0:
            raise ValueError(f"split_fractions must be non-negative and sum to 1, got {self.split_fractions}")
        return self


class MimicCorpusConfig(StrictModel):
    """MIMIC-CXR-JPG v2 in its published layout (see pairaug_ray.corpora.mimic)."""

    root: Uri = Field(description="Folder holding mimic-cxr-2.0.0-*.csv.gz and files/pXX/...")
    reports_root: Uri | None = Field(
        None, description="Folder holding files/pXX/pXXXXXXXX/sXXXXXXXX.txt (default: root)."
    )
    text: ReportText = Field(
        "pairaug",
        description="pairaug: impression+findings lower-cased, punctuation removed (PairAug); "
        "chexzero: impression only (CheXzero); sections: 'FINDINGS: ... IMPRESSION: ...' as written.",
    )
    views: tuple[str, ...] = Field(
        ("PA", "AP"), description="ViewPosition values to keep (frontal by default)."
    )
    splits: tuple[Literal["train", "validate", "test"], ...] = ("train", "validate", "test")
    labels: Literal["chexpert", "labeler"] = Field(
        "chexpert",
        description="chexpert: the published mimic-cxr-2.0.0-chexpert.csv.gz; labeler: this project's labeler.",
    )
    limit: int | None = Field(None, ge=1, description="Keep only the first N studies (for trials).")
    mimic_iv_root: Uri | None = Field(
        None,
        description="MIMIC-IV folder (hosp/patients.csv.gz, hosp/admissions.csv.gz): adds each pair's sex, "
        "age at the study and race group, for demographic prompts and subgroup evaluation.",
    )


class ReportsCorpusConfig(StrictModel):
    """Reports without images (see pairaug_ray.corpora.reports): each becomes a row that InterAug draws
    an image for, as written and after rewriting."""

    path: Uri = Field(
        description="A file or a folder of files (JSONL, CSV or Parquet), or, with format mimic, the "
        "folder holding MIMIC-CXR's report tree files/pXX/pSUBJECT/sSTUDY.txt."
    )
    format: Literal["auto", "jsonl", "csv", "parquet", "mimic"] = Field(
        "auto", description="auto: from the file names (.jsonl/.json, .csv, .parquet)."
    )
    text_field: str = Field("report", min_length=1, description="The column holding the report text.")
    id_field: str | None = Field(
        None, description="A column with a unique id per report; null: the report text identifies it."
    )
    patient_field: str | None = Field(None, description="A column with the patient id, if known.")
    study_field: str | None = Field(None, description="A column with the study id, if known.")
    split_field: str | None = Field(
        None, description="A column with train/validate/test per report; rows without one get `split`."
    )
    split: Literal["train", "validate", "test"] = Field(
        "train", description="The split of reports that name none (rewrite.splits decides what is drawn)."
    )
    text: Literal["as_given", "pairaug", "chexzero", "sections"] | None = Field(
        None,
        description="Which text of each report to draw: as_given, or the sections' forms of corpus.mimic.text; "
        "null: as_given for files, pairaug for MIMIC-CXR's tree.",
    )
    duplicates: Literal["skip", "error", "keep"] = Field(
        "skip",
        description="A report whose text another report already has: skip (recorded as skipped, with the "
        "row it repeats), error, or keep (drawn again as another patient).",
    )
    limit: int | None = Field(None, ge=1, description="Read only the first N reports (for trials).")
    out: Uri | None = Field(
        None, description="Where the imported reports go (default: <run.output_dir>/reports)."
    )

    def text_mode(self) -> str:
        return self.text or ("pairaug" if self.format == "mimic" else "as_given")


class CorpusConfig(StrictModel):
    """Which real corpus the job starts from; only the section named by `kind` is used.

    `reports` adds report-only rows beside the pairs of phantom/mimic/manifest (the image-poor,
    report-rich case: the pairs train the scorer and the generator, the reports are drawn), or is
    the whole corpus with kind `reports`."""

    kind: Literal["phantom", "mimic", "manifest", "reports"] = "phantom"
    out: Uri | None = Field(
        None, description="Where a built corpus is written (default: <run.output_dir>/corpus)."
    )
    phantom: PhantomCorpusConfig = PhantomCorpusConfig()
    mimic: MimicCorpusConfig | None = None
    manifest: Uri | None = Field(None, description="kind=manifest: an existing pair dataset root.")
    reports: ReportsCorpusConfig | None = Field(
        None, description="Reports without images: the whole corpus (kind reports) or beside the pairs."
    )

    @model_validator(mode="after")
    def _check(self) -> CorpusConfig:
        if self.kind == "mimic" and self.mimic is None:
            raise ValueError(
                "kind is 'mimic' but the corpus.mimic section is missing (it needs at least 'root')"
            )
        if self.kind == "manifest" and self.manifest is None:
            raise ValueError("kind is 'manifest' but corpus.manifest (a pair dataset root) is not set")
        if self.kind == "reports" and self.reports is None:
            raise ValueError(
                "kind is 'reports' but the corpus.reports section is missing (it needs at least 'path')"
            )
        return self

    @property
    def has_pairs(self) -> bool:
        """Whether the corpus has image-report pairs (every kind but a report-only corpus)."""
        return self.kind != "reports"


class ModelsConfig(StrictModel):
    """Model references: a local folder, an s3:// prefix (downloaded once per node) or a hub id."""

    cache_dir: str = Field(
        "~/.cache/pairaug/models", description="Node-local cache for models fetched from s3://."
    )
    build_tiny: bool = Field(
        False, description="Build the tiny random-weight models into tiny_dir before the job."
    )
    tiny_dir: Uri | None = Field(None, description="Default: <run.output_dir>/models.")
    diffusion: str | None = Field(None, description="Text-to-image pipeline (RoentGen or any SD 1.x/2.x).")
    scorer: str | None = Field(None, description="CLIP-family dual encoder used to score pairs.")
    train_generator: bool = Field(
        False,
        description="Train the generator first (the finetune_t2i block, on the real training pairs); "
        "reused once it reached finetune_t2i.steps.",
    )
    train_scorer: bool = Field(
        False,
        description="Train the scorer first: the train block's CLIP on the real training pairs only "
        "(PairAug's MedCLIP, trained in this world); reused once finished with the same settings.",
    )
    scorer_steps: int | None = Field(
        None,
        ge=1,
        description="Optimiser steps of the trained scorer; default train.steps, else train.epochs.",
    )

    @model_validator(mode="after")
    def _one_source_per_model(self) -> ModelsConfig:
        for flag, ref in (("train_generator", "diffusion"), ("train_scorer", "scorer")):
            if getattr(self, flag) and getattr(self, ref):
                raise ValueError(
                    f"models.{flag} trains the {ref} model, but models.{ref} names one "
                    f"({getattr(self, ref)!r}): set one of the two"
                )
        return self


# --- report rewriting (PairAug step 1) ------------------------------------------------------------------

RewriteMode = Literal["inter", "intra", "paraphrase", "as_written"]
# Modes that call the rewriting model (as_written copies the report: no model, no prompt).
MODEL_MODES = ("inter", "intra", "paraphrase")

# PairAug's public prompts (InterAug_Step1.py / IntraAug_Step1.py, l.77). The paraphrase prompt is the
# AugText baseline, which the public code does not include: the same instruction, asking for the same meaning.
INTER_SYSTEM_PROMPT = (
    "Following is an original chest X-Ray report. Generate one possible augmentation that is limited to "
    "50 words while conveying partial opposite meanings than the original report."
)
INTRA_SYSTEM_PROMPT = (
    "Following is an original chest X-ray report. Generate one reasonable augmentation that is limited to "
    "50 words while conveying patient's changes in symptom than the original report."
)
PARAPHRASE_SYSTEM_PROMPT = (
    "Following is an original chest X-ray report. Generate one possible augmentation that is limited to "
    "50 words while conveying the same meaning as the original report."
)


class PromptTemplate(StrictModel):
    """A versioned chat prompt: the instruction as the system message, the report as the user message."""

    version: str = Field(
        min_length=1, description="Recorded with every output; change it when you change the text."
    )
    system: str = Field(min_length=1)
    user: str = Field("{report}", description="Must contain {report}.")

    @model_validator(mode="after")
    def _check(self) -> PromptTemplate:
        if "{report}" not in self.user:
            raise ValueError("the user template must contain {report}")
        return self

    def render(self, report: str) -> tuple[str, str]:
        return self.system, self.user.replace("{report}", report)

    def digest(self) -> str:
        import hashlib

        return hashlib.sha256(f"{self.version}\x1f{self.system}\x1f{self.user}".encode()).hexdigest()


class RewritePrompts(StrictModel):
    inter: PromptTemplate = PromptTemplate(version="pairaug-inter-1", system=INTER_SYSTEM_PROMPT)
    intra: PromptTemplate = PromptTemplate(version="pairaug-intra-1", system=INTRA_SYSTEM_PROMPT)
    paraphrase: PromptTemplate = PromptTemplate(
        version="augtext-paraphrase-1", system=PARAPHRASE_SYSTEM_PROMPT
    )


class OpenAIBackendConfig(StrictModel):
    """Any OpenAI-compatible chat-completions endpoint: OpenAI, Azure OpenAI, vLLM, Ray Serve, llm-katan."""

    base_url: str = Field(
        "http://127.0.0.1:8000/v1", description="Endpoint root, e.g. http://vllm.llm.svc:8000/v1"
    )
    model: str = Field(
        "gpt-3.5-turbo", description="Model name sent with each request (PairAug used gpt-3.5-turbo)."
    )
    api_key_env: str | None = Field(
        "OPENAI_API_KEY",
        description="NAME of the environment variable holding the API key (never the key); null for servers without auth.",
    )
    azure_api_version: str | None = Field(
        None, description="Set to use Azure OpenAI (base_url is the Azure endpoint)."
    )
    concurrency: int = Field(64, ge=1, description="Requests in flight per client actor.")
    actors: int = Field(
        1, ge=1, description="Client actors; total in-flight requests = actors x concurrency."
    )
    qps: float | None = Field(None, gt=0, description="Request rate limit per actor (null: unlimited).")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(
        6, ge=0, description="Retries after a 429, 5xx, timeout, connection or malformed response."
    )
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)
    send_seed: bool = Field(
        True, description="Send a per-row seed (OpenAI and vLLM honour it for reproducibility)."
    )
    allowed_hosts: tuple[str, ...] = Field(
        (), description="Extra hosts that may receive reports ('.example.org' = suffix)."
    )
    allow_external: bool = Field(False, description="Allow any host. Reports are medical data: think first.")
    # Whether base_url may receive reports is decided by the client that sends them
    # (models/openai_chat.py, `check_endpoint`); the jobs ask it before any work starts.


class VLLMBackendConfig(StrictModel):
    """Ray Data's LLM processor with a vLLM engine on GPU actors (ray.data.llm)."""

    model: str = Field(description="Model reference (local folder, s3:// prefix or hub id).")
    replicas: int = Field(1, ge=1, description="vLLM engine replicas (each on tensor_parallel_size GPUs).")
    tensor_parallel_size: int = Field(1, ge=1)
    batch_size: int = Field(64, ge=1)
    max_model_len: int = Field(4096, ge=128)
    accelerator_type: str | None = Field(None, description="e.g. H100, A10G (Ray accelerator type).")
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra vLLM engine arguments.")


class LocalBackendConfig(StrictModel):
    """A Hugging Face causal LM loaded with transformers on CPU or GPU actors."""

    model: str = Field(description="Model reference (local folder, s3:// prefix or hub id).")
    batch_size: int = Field(8, ge=1, description="Prompts generated together.")
    actors: int = Field(1, ge=1)
    num_gpus: float = Field(0.0, ge=0, description="GPUs per actor; 0 runs on CPU.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: fp16 on CUDA, fp32 on CPU."
    )


class RulesBackendConfig(StrictModel):
    """The deterministic rule-based rewriter (no model): flips findings the labeler recognises."""

    min_flips: int = Field(1, ge=1)
    max_flips: int = Field(2, ge=1)
    actors: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _check(self) -> RulesBackendConfig:
        if self.max_flips < self.min_flips:
            raise ValueError(f"max_flips ({self.max_flips}) is smaller than min_flips ({self.min_flips})")
        return self


class RewriteConfig(StrictModel):
    """PairAug's LLM step: new reports with partly opposite findings (inter), changed findings of the same
    patient (intra), or the same meaning (paraphrase, the AugText baseline)."""

    backend: Literal["rules", "openai", "vllm", "local"] = "rules"
    modes: tuple[RewriteMode, ...] = Field(
        ("inter", "intra"),
        min_length=1,
        description="inter, intra, paraphrase: rewritten by the back-end; as_written: the report itself, "
        "copied for InterAug to draw (report -> pair; one per report, no model call). Report-only rows "
        "get inter and as_written tasks only: IntraAug and AugText need the real image.",
    )
    n: int = Field(1, ge=1, description="Rewrites per report and mode (as_written: one).")
    splits: tuple[Literal["train", "validate", "test"], ...] = Field(
        ("train",), description="Splits to rewrite."
    )
    patient_fraction: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="Rewrite the reports of a seeded fraction of the patients only (whole patients, "
        "drawn as train.real_fraction draws them): a pilot on a large corpus, or a laptop demo. "
        "PairAug rewrites every report (1.0).",
    )
    subset_seed: int = Field(0, description="Seed of the patient_fraction draw.")
    min_words: int = Field(
        20, ge=0, description="Reports with fewer words are recorded as skipped (PairAug: 20)."
    )
    word_limit: int = Field(50, ge=1, description="The prompt's word limit (PairAug: 50).")
    word_tolerance: float = Field(1.5, ge=1.0, description="Outputs longer than word_limit x tolerance fail.")
    max_attempts: int = Field(3, ge=1, description="Generations per row until one passes the quality checks.")
    temperature: float = Field(0.5, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(300, ge=1)
    batch_size: int = Field(32, ge=1, description="Rows per Ray Data batch.")
    rows_per_file: int = Field(
        512,
        ge=1,
        description="Finished rows reach storage in files of this many rows: less is redone after a crash.",
    )
    prompts: RewritePrompts = RewritePrompts()
    output: Uri | None = Field(None, description="Default: <run.output_dir>/rewrites.")
    retry_errors: bool = Field(
        True, description="On a rerun, redo rows that ended in an error (done rows are kept)."
    )
    openai: OpenAIBackendConfig | None = None
    vllm: VLLMBackendConfig | None = None
    local: LocalBackendConfig | None = None
    rules: RulesBackendConfig = RulesBackendConfig()

    @model_validator(mode="after")
    def _check(self) -> RewriteConfig:
        if self.backend != "rules" and getattr(self, self.backend) is None:
            needs = "" if self.backend == "openai" else " (it needs at least 'model')"
            raise ValueError(
                f"backend is {self.backend!r} but the rewrite.{self.backend} section is missing{needs}"
            )
        return self

    def prompt(self, mode: RewriteMode) -> PromptTemplate:
        return getattr(self.prompts, mode)


# --- image generation (PairAug step 2: InterAug text-to-image, IntraAug prompt-to-prompt) ---------------


class InterGenerateConfig(StrictModel):
    """InterAug: the rewritten report drawn from noise (a new patient)."""

    images_per_report: int = Field(1, ge=1)
    num_inference_steps: int = Field(
        50, ge=1, description="PairAug's InterAug code: 50 (the paper's text gives 75, the IntraAug setting)."
    )
    guidance_scale: float = Field(4.0, ge=0.0)
    batch_size: int = Field(
        16,
        ge=1,
        description="Prompts per pipeline call (halved on out-of-memory). On an H200 at 512 px: 0.53 images/s "
        "at 1, 2.7 at 8, 3.1 at 16, 3.2 at 32 (docs/benchmarks.md).",
    )


class IntraGenerateConfig(StrictModel):
    """IntraAug: prompt-to-prompt edit of the original report's image towards the rewritten report."""

    samples: int = Field(
        1,
        ge=1,
        description="Edits per report. PairAug's code draws 10 and lets the hybrid rule keep the consistent "
        "ones; 1 by default because every edit costs a full P2P pass (configs/mimic-cxr.yaml sets 10).",
    )
    num_inference_steps: int = Field(75, ge=1)
    guidance_scale: float = Field(4.0, ge=0.0)
    controller: Literal["refine", "replace", "reweight"] = Field("refine", description="PairAug: refine.")
    cross_replace: float = Field(
        0.5, ge=0.0, le=1.0, description="eta: fraction of steps with cross-attention replaced."
    )
    self_replace: float = Field(
        0.2, ge=0.0, le=1.0, description="Fraction of steps with self-attention replaced."
    )
    self_replace_max_tokens: int = Field(
        256, ge=1, description="Only maps with at most this many queries (16x16)."
    )
    local_blend_words: tuple[str, str] | None = Field(
        None, description="(source word, target word); off in PairAug."
    )
    local_blend_threshold: float = Field(0.3, gt=0.0, lt=1.0)
    reweight: dict[str, float] = Field(
        default_factory=dict, description="Word -> attention factor (reweight)."
    )
    source: Literal["generated", "real"] = Field(
        "generated",
        description="generated: the original is drawn from the original report (PairAug); real: the real image is "
        "DDIM-inverted so the edit starts from the actual patient (uses DDIM sampling).",
    )


class DemographicTarget(StrictModel):
    """The attributes InterAug's new patients are drawn from (weights need not sum to 1)."""

    sex: dict[Literal["F", "M"], float] | None = Field(None, description='e.g. {"F": 1, "M": 1}')
    race: dict[Literal["WHITE", "BLACK", "ASIAN", "HISPANIC", "OTHER"], float] | None = None
    age_bands: list[tuple[int, int, float]] | None = Field(
        None, description="[low, high, weight] in years, e.g. [[18, 39, 1], [40, 64, 1], [65, 90, 1]]."
    )

    @model_validator(mode="after")
    def _check(self) -> DemographicTarget:
        for name in ("sex", "race"):
            weights = getattr(self, name)
            if weights is not None and (any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0):
                raise ValueError(f"{name} weights must be >= 0 with a positive sum, got {weights}")
        for low, high, w in self.age_bands or []:
            if not 0 <= low <= high <= 120 or w < 0:
                raise ValueError(
                    f"age band [{low}, {high}, {w}] needs 0 <= low <= high <= 120 and weight >= 0"
                )
        if self.age_bands is not None and sum(w for _, _, w in self.age_bands) <= 0:
            raise ValueError("age_bands weights must have a positive sum")
        return self


class GeneratePromptConfig(StrictModel):
    """What the generator is prompted with besides the report."""

    demographics: bool = Field(
        False,
        description="Prefix each prompt with the patient's age, race group and sex ('74 year old BLACK male. "
        "<report>'), the form RoentGen-v2 was trained on; unknown attributes are left out.",
    )
    target: DemographicTarget | None = Field(
        None,
        description="InterAug only: draw each new patient's attributes from these weights (seeded by the "
        "image's id) instead of copying the source patient's; the drawn values are recorded on the row.",
    )
    drop_denials: bool = Field(
        False,
        description="InterAug only: prompt without the report's sentences that only deny findings ('No pleural "
        "effusion.'): generators draw the words they are given, negated or not (docs/study.md). The pair "
        "keeps its whole report.",
    )


class GenerateConfig(StrictModel):
    """Stable Diffusion (RoentGen or any SD 1.x/2.x) on GPU actor pools."""

    model: str | None = Field(None, description="Pipeline reference; default models.diffusion.")
    branches: tuple[Literal["inter", "intra"], ...] = Field(("inter", "intra"), min_length=1)
    height: int | None = Field(
        512, ge=16, description="Pixels (multiple of 8); null: the model's default size."
    )
    width: int | None = Field(512, ge=16)
    scheduler: Literal["pndm", "ddim", "dpmsolver++"] = "pndm"
    dtype: Literal["auto", "float16", "float32"] = Field(
        "auto", description="auto: fp16 on CUDA, fp32 on CPU."
    )
    num_gpus: float = Field(1.0, ge=0.0, description="GPUs per actor (fractional allowed); 0 runs on CPU.")
    num_cpus: float = Field(1.0, gt=0.0, description="CPUs per actor (on CPU: the torch threads it uses).")
    min_actors: int = Field(1, ge=1)
    max_actors: int = Field(
        8, ge=1, description="The pool grows to this with the queue; KubeRay adds GPU pods."
    )
    inter: InterGenerateConfig = InterGenerateConfig()
    intra: IntraGenerateConfig = IntraGenerateConfig()
    prompt: GeneratePromptConfig = GeneratePromptConfig()
    output: Uri | None = Field(None, description="Default: <run.output_dir>/generated.")
    rows_per_file: int = Field(64, ge=1)
    retry_errors: bool = True

    @model_validator(mode="after")
    def _check(self) -> GenerateConfig:
        for name in ("height", "width"):
            v = getattr(self, name)
            if v is not None and v % 8:
                raise ValueError(f"{name} must be a multiple of 8 (the VAE's factor), got {v}")
        if self.max_actors < self.min_actors:
            raise ValueError(f"max_actors ({self.max_actors}) is smaller than min_actors ({self.min_actors})")
        return self


# --- scoring and pruning (PairAug step 3) --------------------------------------------------------------


class ScoreConfig(StrictModel):
    """Embed generated pairs with a CLIP-family scorer (MedCLIP in the paper)."""

    model: str | None = Field(None, description="Scorer reference; default models.scorer.")
    kind: Literal["auto", "hf-clip", "open-clip", "medclip"] = Field(
        "auto", description="auto: from the folder's files."
    )
    mode: Literal["cosine", "scaled"] = Field(
        "cosine",
        description="InterAug's score: cosine (the paper) or the model's logit scale x cosine (PairAug's code).",
    )
    original: Literal["real", "generated"] = Field(
        "real",
        description="IntraAug's original image: the real one (PairAug's code) or the one drawn for the original report.",
    )
    batch_size: int = Field(32, ge=1)
    num_gpus: float = Field(0.0, ge=0.0, description="GPUs per scoring actor (fractional allowed).")
    num_cpus: float = Field(1.0, gt=0.0)
    min_actors: int = Field(1, ge=1)
    max_actors: int = Field(4, ge=1)
    output: Uri | None = Field(None, description="Default: <run.output_dir>/scored.")
    rows_per_file: int = Field(256, ge=1)


class GeneratorEncoderConfig(StrictModel):
    """The image encoder the report card measures with (eval/encoders.py)."""

    kind: Literal["clip", "rad-dino"] = Field(
        "clip",
        description="clip: the image tower of a CLIP trained on real pairs (the phantom's encoder); "
        "rad-dino: microsoft/rad-dino through transformers (CheXGenBench's, for real radiographs).",
    )
    path: str | None = Field(
        None,
        description="clip: a CLIP folder or a `pairaug train` run (its latest checkpoint); default "
        "<train storage>/real-only. rad-dino: a folder or hub id; default microsoft/rad-dino.",
    )
    batch_size: int = Field(32, ge=1)


class NearDuplicateConfig(StrictModel):
    """Drop InterAug images that are near-duplicates of a real training image (memorised, not new)."""

    enabled: bool = Field(False, description="Off by default: it encodes every training and InterAug image.")
    encoder: GeneratorEncoderConfig = GeneratorEncoderConfig()
    threshold: float | None = Field(
        None, description="Cosine above which an image is a near-duplicate; null: calibrated (quantile)."
    )
    quantile: float = Field(
        0.99,
        gt=0.5,
        lt=1.0,
        description="Calibration: the similarity real training images of other patients exceed only "
        "1 - quantile of the time.",
    )


class ReaderVerdictsConfig(StrictModel):
    """Prune the synthetic pairs a reader study rejected (docs/reader-study.md)."""

    study: str = Field(description="The study's folder (`pairaug reader-study create --out`).")
    rule: Literal["poor", "poor_or_synthetic"] = Field(
        "poor",
        description="poor: pairs rated poor in the pairs task; poor_or_synthetic: also pairs whose "
        "image or report readers called synthetic.",
    )
    quorum: Literal["any", "majority", "all"] = Field(
        "any", description="How many of the readers who answered must reject: any, a majority, all."
    )
    database_url_env: str | None = Field(
        None,
        description="NAME of the environment variable holding the answers' database URL (PostgreSQL); "
        "null: the SQLite file in the study's folder.",
    )

    @model_validator(mode="before")
    @classmethod
    def _folder_alone(cls, data: Any) -> Any:
        # `prune.reader_verdicts: runs/demo/reader-study` is the study with the default rule.
        return {"study": data} if isinstance(data, str) else data


class PruneConfig(StrictModel):
    """PairAug's two pruning rules; re-run alone with `pairaug prune`."""

    tau: float = Field(0.3, description="InterAug: keep when the score exceeds tau.")
    epsilon: float = Field(
        0.003, ge=0.0, description="IntraAug: keep when every S_k exceeds its global mean - epsilon."
    )
    near_duplicate: NearDuplicateConfig = NearDuplicateConfig()
    reader_verdicts: ReaderVerdictsConfig | None = Field(
        None, description="Also prune the synthetic pairs a reader study rejected (null: no study)."
    )
    output: Uri | None = Field(
        None, description="Final synthetic manifest; default <run.output_dir>/synthetic."
    )


class AugmentConfig(StrictModel):
    """The end-to-end `augment` job: validate -> rewrite -> generate -> score -> prune -> report."""

    max_error_fraction: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="Fail the job when a stage errors on more than this fraction of its rows.",
    )
    max_report_chars: int = Field(20_000, ge=1, description="Longer reports are recorded as errors.")
    check_images: bool = Field(True, description="Decode every real image before anything is generated.")
    examples: int = Field(6, ge=0, description="Pairs in the example grid picture.")


# --- contrastive pretraining (CheXzero-style CLIP on Ray Train) ----------------------------------------------

SyntheticOrigin = Literal["inter", "intra", "augtext", "as_written"]


class AugImgConfig(StrictModel):
    """The AugImg baseline (PairAug's image augmentations), applied in the data pipeline."""

    enabled: bool = False
    crop_scale: tuple[float, float] = Field((0.6, 1.0), description="RandomResizedCrop area range.")
    blur_p: float = Field(0.5, ge=0.0, le=1.0, description="Probability of a Gaussian blur.")
    blur_sigma: tuple[float, float] = Field((0.1, 2.0), description="Blur sigma range, in pixels at 224 px.")
    grayscale_p: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="Probability of RandomGrayscale (a no-op on grey radiographs; kept for parity).",
    )


class MedCutMixConfig(StrictModel):
    """MedCutMix (disease-aware online mixing); off by default. No public code exists: every choice of
    the documented reading is a knob here. See docs/training.md."""

    enabled: bool = False
    p: float = Field(0.5, ge=0.0, le=1.0, description="Probability that a batch is mixed.")
    layer: int = Field(
        0, ge=0, description="ViT encoder layer after which patch states are mixed (0 = after the first)."
    )
    lam_distribution: Literal["uniform", "beta"] = Field(
        "uniform", description="lambda (fraction of patches from the partner): U[lam] or Beta(alpha, alpha)."
    )
    lam: tuple[float, float] = Field((0.1, 0.5), description="U[a, b] bounds of lambda.")
    alpha: float = Field(1.0, gt=0.0, description="Beta(alpha, alpha) parameter of lambda.")
    replace_contradiction: bool = Field(
        True, description="Drop the report's negated sentence about the inserted finding."
    )

    @model_validator(mode="after")
    def _check(self) -> MedCutMixConfig:
        a, b = self.lam
        if not 0.0 <= a <= b <= 1.0:
            raise ValueError(f"lam must satisfy 0 <= a <= b <= 1, got {list(self.lam)}")
        return self


class TrainConfig(StrictModel):
    """Pretraining a CheXzero-style CLIP on real plus synthetic pairs with Ray Train."""

    preset: Literal["vit-b-32", "vit-b-16", "tiny"] = Field(
        "vit-b-32", description="Architecture preset (models/clip.py)."
    )
    init: str | None = Field(
        None, description="Checkpoint to start from (OpenAI CLIP in transformers format); random if null."
    )
    text: Literal["impression", "findings+impression", "report", "impression+denials"] = Field(
        "impression",
        description="Report text: CheXzero's impression only, findings + impression, or the report column; "
        "impression+denials: the impression and the findings section's sentences that only deny findings "
        "(real pairs; the study's text-only control).",
    )
    text_form: Literal["pairaug", "as_written"] = Field(
        "pairaug",
        description="One form for real and synthetic texts. pairaug: every text lower-cased to its words, "
        "sentences joined by ',' (PairAug's preprocessing, which rewrites start from and LLMs answer in); "
        "as_written: each text as stored, only right when real and synthetic texts are written alike.",
    )
    pad_size: int = Field(
        320, ge=16, description="CheXzero: resize the long side to this and zero-pad to a square."
    )
    real: Uri | None = Field(None, description="Real pairs; default: the augment job's validated corpus.")
    real_fraction: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="Train on this fraction of the real training patients (a seeded draw by patient; the "
        "low-data regime). Synthetic pairs whose parent is not drawn are left out too.",
    )
    subset_seed: int = Field(
        0, description="Seed of the real_fraction draw (the same subset for every run.seed)."
    )
    synthetic: Uri | None = Field(
        None,
        description="Synthetic pairs (kept ones are used); default: prune.output. null-able with origins [].",
    )
    synthetic_origins: list[SyntheticOrigin] = Field(
        ["inter", "intra"],
        description="Which synthetic pairs join the real ones ([] trains on real pairs only).",
    )
    synthetic_sources: list[Literal["pair", "report"]] = Field(
        ["pair", "report"],
        min_length=1,
        description="Synthetic pairs made from which rows: pair (a real image-report pair) or report "
        "(a report-only row, corpus.reports). The report-rich study's arms use one or both.",
    )
    synthetic_ratio: float | None = Field(
        None,
        ge=0.0,
        description="Synthetic pairs per real pair per epoch (sampled); null: every kept synthetic pair.",
    )
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(1e-4, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    batch_size: int = Field(64, ge=2, description="Global batch (negatives are gathered from every worker).")
    epochs: int = Field(10, ge=1)
    steps: int | None = Field(
        None,
        ge=1,
        description="Train exactly this many optimiser steps, over as many epochs as it takes (epochs is then "
        "ignored): compute-matched comparisons of data sets of different sizes. null: epochs.",
    )
    num_workers: int = Field(
        2, ge=0, description="Training workers (DDP); 0 runs the loop in the driver (Ray Train local mode)."
    )
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0.0)
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on GPUs that have it, else fp32."
    )
    checkpoint_every_steps: int = Field(100, ge=1)
    keep_checkpoints: int = Field(
        10,
        ge=1,
        description="Checkpoints kept: the best by val_auc (CheXzero ensembles its top 10), plus the latest.",
    )
    max_failures: int = Field(
        2, ge=0, description="Worker-group restarts (from the latest checkpoint) before the run fails."
    )
    storage_path: Uri | None = Field(
        None, description="Ray Train storage (local or s3://); default <run.output_dir>/train."
    )
    name: str = Field("clip", description="Run name under storage_path; rerunning the same name resumes it.")
    shuffle_buffer: int = Field(256, ge=0, description="Local shuffle buffer of the data iterator (rows).")
    augment_image: AugImgConfig = AugImgConfig()
    medcutmix: MedCutMixConfig = MedCutMixConfig()
    cache_preprocessed: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Decode and preprocess once and keep the tensors in the object store for every epoch. "
        "auto: when AugImg is off (its crops must differ per epoch) and the tensors take under a quarter "
        "of the cluster's object store.",
    )
    validation: bool = Field(
        True,
        description="Zero-shot AUC (CheXzero's prompts) on the real validation split at every checkpoint, "
        "recorded as val_auc; checkpoints are then kept by it (the ensemble's top-k).",
    )
    validation_split: str = "validate"
    validation_labels: list[str] = Field(
        ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"],
        description="CheXpert observations scored for val_auc (their label_* columns).",
    )
    validation_max_images: int = Field(500, ge=1)
    early_stopping_patience: int | None = Field(
        None,
        ge=1,
        description="Stop when val_auc has not improved (by early_stopping_min_delta) for this many checkpoints "
        "in a row; steps or epochs is then the cap. The best checkpoint by val_auc is the run's model. "
        "null: train to the cap. Needs validation.",
    )
    early_stopping_min_delta: float = Field(
        0.0, ge=0.0, description="The val_auc gain that counts as an improvement for early stopping."
    )

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.early_stopping_patience and not self.validation:
            raise ValueError("early_stopping_patience needs validation: true (it stops on val_auc)")
        if self.num_workers and self.batch_size % self.num_workers:
            raise ValueError(
                f"batch_size {self.batch_size} is not divisible by num_workers {self.num_workers}"
            )
        return self


class FinetuneT2IConfig(StrictModel):
    """RoentGen-style text-to-image fine-tuning of a Stable Diffusion pipeline on Ray Train
    (`pairaug finetune-t2i`; docs/generator.md)."""

    base: str | None = Field(
        None,
        description="Pipeline to fine-tune (folder, s3:// prefix or hub id: SD 1.5 for RoentGen's recipe); "
        "null trains a small pipeline from scratch, its VAE first.",
    )
    real: Uri | None = Field(None, description="Pairs to train on (split train); default: the corpus.")
    text: Literal["impression", "findings+impression", "report"] = Field(
        "impression", description="The report text the images are drawn from (RoentGen: impression)."
    )
    image_size: int = Field(
        64, ge=16, description="Training resolution in pixels (SD 1.5: 512); from scratch, a multiple of 16."
    )
    train_text_encoder: bool = Field(
        True, description="Fine-tune the CLIP text encoder with the UNet (RoentGen's best variant)."
    )
    text_dropout: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="Reports replaced by the empty prompt (for classifier-free guidance).",
    )
    steps: int = Field(2000, ge=1, description="UNet (and text encoder) optimiser steps.")
    vae_steps: int = Field(1500, ge=0, description="From scratch: VAE optimiser steps before the UNet's.")
    batch_size: int = Field(32, ge=1, description="Global batch (split over the workers).")
    lr: float = Field(1e-4, gt=0.0, description="UNet learning rate (AdamW); RoentGen: 5e-6 from SD 1.5.")
    text_lr: float | None = Field(None, gt=0.0, description="Text encoder learning rate; null: lr.")
    vae_lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(1e-2, ge=0.0)
    warmup_steps: int = Field(0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0, description="EMA of the UNet's weights; 0 turns it off.")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on GPUs that have it, fp16 on other GPUs, fp32 on CPU."
    )
    gradient_checkpointing: bool = Field(False, description="Trade compute for UNet activation memory (GPU).")
    num_workers: int = Field(1, ge=1, description="Ray Train workers (DDP).")
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0.0)
    checkpoint_every_steps: int = Field(200, ge=1)
    keep_checkpoints: int = Field(3, ge=1)
    max_failures: int = Field(2, ge=0, description="Worker-group restarts from the latest checkpoint.")
    sample_steps: int = Field(25, ge=1, description="Sampling steps of the checkpoint grids.")
    guidance_scale: float = Field(3.0, ge=1.0)
    sample_reports: list[str] | None = Field(
        None,
        description="Reports drawn at every checkpoint; null: one per CheXpert-5 finding and one normal.",
    )
    storage_path: Uri | None = Field(
        None, description="Ray Train storage; default <run.output_dir>/generator."
    )
    name: str = Field("t2i", description="Run name under storage_path; rerunning the same name resumes it.")

    @model_validator(mode="after")
    def _check(self) -> FinetuneT2IConfig:
        if self.batch_size % self.num_workers:
            raise ValueError(
                f"batch_size {self.batch_size} is not divisible by num_workers {self.num_workers}"
            )
        if self.base is None and self.image_size % 16:
            raise ValueError(f"image_size {self.image_size}: from scratch it must be a multiple of 16")
        return self


class EvalGeneratorConfig(StrictModel):
    """The generator report card (`pairaug eval-generator`; docs/generator.md): fidelity, findings
    shown, IntraAug edits and patient identity, memorisation."""

    model: str | None = Field(
        None,
        description="The pipeline to grade (folder, s3:// prefix or hub id); null: the latest pipeline "
        "of the finetune_t2i run, else generate.model / models.diffusion.",
    )
    encoder: GeneratorEncoderConfig = GeneratorEncoderConfig()
    findings: list[str] = Field(
        ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"],
        min_length=1,
        description="CheXpert observations the classifier scores (their label_* columns).",
    )
    held_out_split: str = Field("test", description="Real reports drawn and real images compared against.")
    reports: int = Field(200, ge=2, description="Held-out reports drawn (fidelity, findings shown).")
    train_reports: int = Field(
        100, ge=0, description="Training reports drawn (memorisation, re-identification); 0: none."
    )
    edits: int = Field(50, ge=0, description="IntraAug edits of held-out studies; 0: none.")
    text: Literal["impression", "findings+impression", "report"] | None = Field(
        None, description="Report text the images are drawn from; null: finetune_t2i.text (as trained)."
    )
    size: int | None = Field(
        None,
        ge=16,
        description="Image size drawn; null: finetune_t2i.image_size for its run, else the pipeline's.",
    )
    num_inference_steps: int = Field(25, ge=1)
    guidance_scale: float = Field(3.0, ge=1.0)
    batch_size: int = Field(8, ge=1, description="Images per pipeline call.")
    classifier: Literal["pixels", "probe", "zero-shot"] = Field(
        "pixels",
        description="Findings shown by: pixels, a logistic regression per finding on the images' own pixels "
        "(pixel_size square), trained on real training images: it shares nothing with the scorer or any CLIP "
        "the study trains; probe, the same on the encoder's features; zero-shot, a CheXzero-style CLIP "
        "(classifier_model) and its evaluate.positive/negative_templates prompts, nothing trained.",
    )
    pixel_size: int = Field(
        32,
        ge=4,
        description="pixels: the side the images are area-averaged to before the classifier reads them.",
    )
    drawn: Uri | None = Field(
        None,
        description="A generate or score output (an augment run's <run>/scored): its text-to-image images "
        "(InterAug, and reports drawn as written) are graded against the labels of the reports they were "
        "drawn for, the rewritten reports with their flipped findings; null: the run's own score output "
        "when it exists and eval_generator.model is not set (the run's generator drew it), else none.",
    )
    drawn_max: int = Field(
        2000, ge=2, description="At most this many of the drawn images are graded (seeded)."
    )
    classifier_model: str | None = Field(
        None,
        description="zero-shot: a CLIP folder or `pairaug train` run; default: the encoder when it is a CLIP.",
    )
    classifier_c: float = Field(1.0, gt=0.0, description="Inverse L2 strength of the finding classifiers.")
    edit_margin: float = Field(
        0.05, ge=0.0, description="A changed finding's score must move by more; kept ones stay within."
    )
    near_duplicate_quantile: float = Field(
        0.99,
        gt=0.5,
        lt=1.0,
        description="Near-duplicate threshold: the similarity real images of other patients exceed "
        "only 1 - quantile of the time.",
    )
    neighbours_shown: int = Field(
        8, ge=0, description="Generated images shown beside their nearest training image."
    )
    output: Uri | None = Field(None, description="Default <run.output_dir>/generator_card.")


class EvalDatasetConfig(StrictModel):
    """One evaluation dataset, read through the adapter of its real file layout (eval/datasets.py)."""

    name: str = Field("phantom-test", min_length=1, description="Name in tables and file names.")
    kind: Literal["manifest", "chexpert", "padchest", "rsna"] = "manifest"
    path: Uri | None = Field(
        None,
        description="manifest: the pair dataset root (default: the augment job's validated corpus); "
        "others: the label CSV (.csv, .csv.gz, .zip).",
    )
    images_root: Uri | None = Field(None, description="Folder the CSV's image paths are relative to.")
    labels: list[str] | None = Field(
        None,
        description="Labels to evaluate; default CheXpert-5 (manifest, chexpert), Pneumonia (rsna), "
        "every label with >= min_positives positives (padchest).",
    )
    split: str | None = Field("test", description="manifest: which split (null: all rows).")
    uncertain: Literal["exclude", "positive", "negative"] = Field(
        "exclude", description="CheXpert -1 labels: left out of that label's metrics, or mapped."
    )
    missing: Literal["negative", "exclude"] = Field(
        "negative", description="Blank (not mentioned) labels: negative, as CheXpert reads them, or left out."
    )
    min_positives: int = Field(
        50, ge=1, description="padchest with labels null: minimum positives per label."
    )
    limit: int | None = Field(None, ge=1, description="Evaluate on the first N images (a quick look).")

    def label_list(self) -> list[str] | None:
        from pairaug_ray.schema import CHEXPERT5

        if self.labels is not None:
            return list(self.labels)
        return {"manifest": list(CHEXPERT5), "chexpert": list(CHEXPERT5), "rsna": ["Pneumonia"]}.get(
            self.kind
        )


class EvalModelConfig(StrictModel):
    name: str = Field(..., min_length=1, description="Row name in the comparison table.")
    path: Uri = Field(
        ..., description="A transformers CLIP folder, or a train run directory (its checkpoints are used)."
    )
    ensemble: int = Field(
        0,
        ge=0,
        description="Run directories: also report the mean of the top-k checkpoints by validation AUC (0: off).",
    )


class LinearProbeConfig(StrictModel):
    """Frozen image encoder + a logistic-regression head per label on a seeded 80/10/10 split."""

    enabled: bool = False
    dataset: EvalDatasetConfig | None = Field(
        None, description="Default: the corpus manifest, every split (the probe makes its own split)."
    )
    fractions: list[float] = Field([0.01, 0.1, 1.0], description="Fractions of the training split used.")
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    c_grid: list[float] = Field(
        [0.01, 0.1, 1.0, 10.0], description="Inverse regularisation strengths; chosen by validation AUC."
    )


class EvaluateConfig(StrictModel):
    """CheXzero zero-shot evaluation with bootstrap intervals, ensembles, linear probing and the report."""

    models: list[EvalModelConfig] = Field(
        [], description="Models to compare; default: the train job's run (last checkpoint + ensemble)."
    )
    ensemble_k: int = Field(10, ge=1, description="Default models: top-k checkpoints by validation AUC.")
    datasets: list[EvalDatasetConfig] = Field([EvalDatasetConfig()], min_length=1)
    positive_templates: list[str] = Field(["{}"], min_length=1)
    negative_templates: list[str] = Field(["no {}"], min_length=1)
    threshold: Literal["max-f1", "validation"] = Field(
        "max-f1",
        description="F1/ACC threshold: the F1-maximising one on the test set (MedKLIP/KAD) or on "
        "validation_split of the same dataset (manifest datasets).",
    )
    validation_split: str = "validate"
    n_bootstrap: int = Field(1000, ge=40, description="Bootstrap resamples (CheXzero: 1,000).")
    pad_size: int = Field(320, ge=16, description="CheXzero's resize-and-pad size.")
    batch_size: int = Field(64, ge=1)
    num_cpus: float = Field(1.0, gt=0.0)
    num_gpus: float = Field(0.0, ge=0.0)
    max_actors: int = Field(4, ge=1)
    checkpoints_per_pass: int = Field(
        4, ge=1, description="Checkpoints one embedding actor holds at once (ensembles go in groups)."
    )
    linear_probe: LinearProbeConfig = LinearProbeConfig()
    subgroup_min_images: int = Field(
        20, ge=1, description="Subgroups (sex, age band, race) with fewer test images get no metrics."
    )
    tsne_per_origin: int = Field(150, ge=0, description="Pairs per origin in the embedding map (0: no map).")
    grid_pairs: int = Field(8, ge=0, description="Pairs per origin in the report's image grid.")
    output: Uri | None = Field(None, description="Default: <run.output_dir>/evaluate.")


StudyArm = Literal[
    "real-low",
    "real",
    "real-all",
    "text-control",
    "reports-as-written",
    "reports-rewritten",
    "reports-pairaug",
    "reports-elsewhere",
    "augtext",
    "inter",
    "intra",
    "intra-real",
    "pairaug",
    "pairaug-unpruned",
    "pairaug-medcutmix",
    "real-medcutmix",
]
STUDY_ARMS: tuple[str, ...] = StudyArm.__args__  # type: ignore[attr-defined]
# The arms that need study.regime report-rich (report-only rows, or the image part beside every image).
REPORT_RICH_ARMS = (
    "real-all",
    "reports-as-written",
    "reports-rewritten",
    "reports-pairaug",
    "reports-elsewhere",
)


class StudyDecision(StrictModel):
    """A design decision the study's config records: which setting, the value chosen, and the split
    whose results chose it (study.json lists them; a held-out test split decides nothing)."""

    setting: str = Field(min_length=1, description="The config key decided, e.g. prune.tau.")
    value: Any = Field(description="The value chosen.")
    split: Literal["train", "validate", "test", "none"] = Field(
        description="The split whose results chose it; none: chosen before any result (a published value)."
    )
    study: str = Field(
        "this",
        description="Whose split: this study's (this), or another study named here (its split holds other patients).",
    )
    evidence: str = Field("", description="What was compared, where it is recorded.")


class StudyConfig(StrictModel):
    """`pairaug study`: does PairAug help? CLIPs pretrained in several arms over seeds, compared with
    paired bootstrap differences on the same test images (docs/study.md)."""

    arms: list[StudyArm] = Field(
        [a for a in STUDY_ARMS if a not in REPORT_RICH_ARMS],
        min_length=1,
        description="Which arms to train (eval/study.py). image-rich: real-low, real, text-control, augtext, "
        "inter, intra, intra-real, pairaug, pairaug-unpruned, pairaug-medcutmix, real-medcutmix; "
        "report-rich adds real-all and reports-as-written, reports-rewritten, reports-pairaug, reports-elsewhere.",
    )
    baseline: StudyArm = Field("real", description="The arm every difference is taken against.")
    ceiling: StudyArm | None = Field(
        None,
        description="An arm with more real data than the baseline (report-rich: real-all): each arm's "
        "difference is also given as the share of the baseline -> ceiling gap it recovers.",
    )
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="Training seeds of every arm.")
    seeds_per_arm: dict[StudyArm, int] = Field(
        {},
        description="Arms that train only the first N of study.seeds (secondary arms; the headline "
        "arms take every seed). Seed k of two arms is paired where both have it.",
    )
    regime: Literal["image-rich", "report-rich"] = Field(
        "image-rich",
        description="image-rich: every training patient's image and report (PairAug's MIMIC-CXR setting). "
        "report-rich: only study.image_fraction of the training patients have images; the others' "
        "reports are report-only rows (corpus.reports) that InterAug draws, as written and rewritten. "
        "The generator and the scorer train on the image part only (docs/study.md).",
    )
    image_fraction: float = Field(
        0.15,
        gt=0.0,
        lt=1.0,
        description="report-rich: the fraction of training patients whose images exist (whole patients, seeded).",
    )
    elsewhere_patients: int = Field(
        500,
        ge=10,
        description="report-rich, arm reports-elsewhere: patients of the disjoint phantom world (another "
        "seed) its generator trains on: the RoentGen situation, a generator trained on other data.",
    )
    elsewhere_seed: int = Field(
        1000, description="The seed of that world (the study's world uses corpus.phantom.seed)."
    )
    elsewhere_generator: str | None = Field(
        None,
        description="reports-elsewhere: a text-to-image pipeline trained on other data (folder, s3:// or hub "
        "id, e.g. RoentGen's) instead of one trained here on the elsewhere phantom world.",
    )
    decisions: list[StudyDecision] = Field(
        [], description="The design decisions behind this config and the split that made each (study.json)."
    )
    rescore_test: bool = Field(
        False,
        description="Score the test split although another design already scored it in this study folder "
        "(the test ledger refuses it otherwise; a second look is recorded as one).",
    )
    low_data_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="real-low: the fraction of real training patients it trains on."
    )
    steps: int = Field(
        600,
        ge=1,
        description="Optimiser steps of every CLIP (compute-matched: more pairs are not more steps); with "
        "training: converged, the cap.",
    )
    training: Literal["compute-matched", "data-matched", "converged"] = Field(
        "compute-matched",
        description="How long each CLIP trains. compute-matched: study.steps steps for every arm (an arm with "
        "synthetic pairs then sees fewer real ones). data-matched: study.epochs epochs for every arm (every arm "
        "sees each real pair as often as real-only does). converged: until the validation AUC has not improved "
        "for study.patience checkpoints, at most study.steps steps; the best checkpoint by validation is used.",
    )
    epochs: int | None = Field(None, ge=1, description="data-matched: epochs of every CLIP.")
    patience: int = Field(
        4, ge=1, description="converged: checkpoints without a validation improvement before a run stops."
    )
    check_every: int = Field(
        50, ge=1, description="converged: steps between checkpoints (each is scored on the validation split)."
    )
    generator: str | None = Field(
        None,
        description="A trained text-to-image pipeline (folder, s3:// or hub id) to use instead of training one "
        "with finetune_t2i; null: train it (or reuse the finetune_t2i run if it finished).",
    )
    scorer: str | None = Field(
        None,
        description="A trained scorer (a CLIP folder) to use instead of training one: follow-up studies that "
        "reuse another study's augment outputs name its scorer.",
    )
    scorer_steps: int | None = Field(
        None,
        ge=1,
        description="Steps of the scorer, a CLIP on the real pairs only (MedCLIP's stand-in); null: steps.",
    )
    split: str = Field("test", description="The corpus split every arm is evaluated on.")
    probe_fractions: list[float] = Field(
        [0.01, 0.1, 1.0], min_length=1, description="Linear probing: fractions of the probe's training part."
    )
    n_bootstrap: int = Field(1000, ge=40, description="Resamples of the test images (and of the seeds).")
    quick: list[str] = Field(
        [],
        description="KEY=VALUE overrides `pairaug study --quick` applies before any --set (a first look).",
    )
    output: Uri | None = Field(None, description="Default: <run.output_dir>/study.")

    @model_validator(mode="after")
    def _check(self) -> StudyConfig:
        if self.baseline not in self.arms:
            raise ValueError(f"baseline {self.baseline!r} is not one of the arms {self.arms}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds {self.seeds} repeat a seed")
        bad = [f for f in self.probe_fractions if not 0.0 < f <= 1.0]
        if bad:
            raise ValueError(f"probe_fractions must lie in (0, 1], got {bad}")
        if self.training == "data-matched" and not self.epochs:
            raise ValueError("training: data-matched needs study.epochs (the epochs of every CLIP)")
        if self.ceiling is not None and self.ceiling not in self.arms:
            raise ValueError(f"ceiling {self.ceiling!r} is not one of the arms {self.arms}")
        for arm, n in self.seeds_per_arm.items():
            if not 1 <= n <= len(self.seeds):
                raise ValueError(
                    f"seeds_per_arm[{arm!r}] is {n}: it takes 1 to {len(self.seeds)} of study.seeds"
                )
        only_reports = [a for a in self.arms if a in REPORT_RICH_ARMS]
        if only_reports and self.regime != "report-rich":
            raise ValueError(
                f"arms {only_reports} need study.regime: report-rich (the world of report-only rows)"
            )
        return self

    def arm_seeds(self, arm: str) -> list[int]:
        return self.seeds[: self.seeds_per_arm.get(arm, len(self.seeds))]  # type: ignore[call-overload]


class JobConfig(StrictModel):
    run: RunConfig = RunConfig()
    ray: RayConfig = RayConfig()
    corpus: CorpusConfig = CorpusConfig()
    models: ModelsConfig = ModelsConfig()
    rewrite: RewriteConfig = RewriteConfig()
    generate: GenerateConfig = GenerateConfig()
    score: ScoreConfig = ScoreConfig()
    prune: PruneConfig = PruneConfig()
    augment: AugmentConfig = AugmentConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    finetune_t2i: FinetuneT2IConfig = FinetuneT2IConfig()
    eval_generator: EvalGeneratorConfig = EvalGeneratorConfig()
    study: StudyConfig = StudyConfig()

    def corpus_dir(self) -> str:
        from pairaug_ray.storage import join

        if self.corpus.kind == "manifest":
            return self.corpus.manifest  # type: ignore[return-value]
        if self.corpus.kind == "reports":
            raise ConfigError(
                "corpus.kind is 'reports': the corpus has no image-report pairs. Name real pairs where "
                "they are needed (train.real, an evaluation dataset's root), or add the reports beside "
                "a pair corpus (corpus.kind phantom, mimic or manifest, with corpus.reports)"
            )
        return self.corpus.out or join(self.run.output_dir, "corpus")

    def reports_dir(self) -> str | None:
        """The imported report-only rows (corpus.reports), or None when the corpus has none."""
        from pairaug_ray.storage import join

        if self.corpus.reports is None:
            return None
        return self.corpus.reports.out or join(self.run.output_dir, "reports")

    def validated_reports_dir(self) -> str:
        from pairaug_ray.storage import join

        return join(self.run.output_dir, "validated_reports")

    def rewrite_dir(self) -> str:
        from pairaug_ray.storage import join

        return self.rewrite.output or join(self.run.output_dir, "rewrites")

    def generate_dir(self) -> str:
        from pairaug_ray.storage import join

        return self.generate.output or join(self.run.output_dir, "generated")

    def validated_dir(self) -> str:
        from pairaug_ray.storage import join

        return join(self.run.output_dir, "validated")

    def score_dir(self) -> str:
        from pairaug_ray.storage import join

        return self.score.output or join(self.run.output_dir, "scored")

    def synthetic_dir(self) -> str:
        from pairaug_ray.storage import join

        return self.prune.output or join(self.run.output_dir, "synthetic")

    def t2i_dir(self) -> str:
        from pairaug_ray.storage import join

        return self.finetune_t2i.storage_path or join(self.run.output_dir, "generator")

    def generator_card_dir(self) -> str:
        from pairaug_ray.storage import join

        return self.eval_generator.output or join(self.run.output_dir, "generator_card")

    def study_dir(self) -> str:
        from pairaug_ray.storage import join

        return self.study.output or join(self.run.output_dir, "study")

    def train_dir(self) -> str:
        from pairaug_ray.storage import join

        return self.train.storage_path or join(self.run.output_dir, "train")

    def evaluate_dir(self) -> str:
        from pairaug_ray.storage import join

        return self.evaluate.output or join(self.run.output_dir, "evaluate")

    def tiny_models_dir(self) -> str:
        from pairaug_ray.storage import join

        return self.models.tiny_dir or join(self.run.output_dir, "models")


# Key names that would only ever hold a secret. Secrets come from the environment or a mounted
# Kubernetes Secret; refusing them here keeps them out of repos, ConfigMaps and provenance.
_SECRET_KEY = re.compile(r"(^|_)(api_?key|secret|password|token|secret_access_key|access_key_id)$", re.I)


def _refuse_secrets(data: Any, path: str = "") -> None:
    if isinstance(data, dict):
        for k, v in data.items():
            p = f"{path}.{k}" if path else str(k)
            if _SECRET_KEY.search(str(k)) and v not in (None, ""):
                raise ConfigError(
                    f"config key {p!r} looks like a secret; secrets are read from environment variables "
                    "(or a Kubernetes Secret mounted as one), never from config files"
                )
            _refuse_secrets(v, p)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            _refuse_secrets(v, f"{path}[{i}]")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides; the value is parsed as YAML (`3` is an int, `[1, 2]` a list)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(
                f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. corpus.phantom.patients=10"
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: value is not valid YAML: {e}") from e
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(parts[: i + 1])!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return data


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that owns the last key of `loc`, for 'did you mean' hints."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        nxt = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if nxt is None:
            return None
        model = nxt
    return model


def format_validation_error(err: ValidationError, source: str, model: type[BaseModel] = JobConfig) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            owner = _model_at(model, loc)
            known = sorted(owner.model_fields) if owner else []
            hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
            msg = "unknown key" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            if known:
                msg += f"; allowed here: {', '.join(known)}"
        else:
            msg = e["msg"]
            if "input" in e and e["type"] not in ("missing",) and not isinstance(e["input"], dict):
                msg += f" (got {e['input']!r})"
        lines.append(f"  - {key}: {msg}")
    if len(lines) == 2:  # one problem: one line
        return f"{lines[0]} {lines[1].removeprefix('  - ')}"
    return "\n".join(lines)


def parse_config(data: Any, source: str = "<config>", overrides: list[str] | None = None) -> JobConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"invalid configuration in {source}: the top level must be a mapping, got {type(data).__name__}"
        )
    data = apply_overrides(data, list(overrides or []))
    _refuse_secrets(data)
    try:
        return JobConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def load_config(uri: str | Path | None, overrides: list[str] | None = None) -> JobConfig:
    """Read a YAML job file (local or s3://), apply overrides, and validate it."""
    if uri is None:
        return parse_config({}, "<defaults>", overrides)
    from pairaug_ray.storage import read_text

    source = str(uri)
    try:
        text = read_text(source)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {source}") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {source} is a folder; give the YAML file in it") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config file {source} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(e, "problem", None) or " ".join(str(e).split())
        raise ConfigError(f"config file {source} is not valid YAML{where}: {what}") from None
    if data is None:
        raise ConfigError(
            f"config file {source} is empty; a job config is a YAML mapping (see configs/demo.yaml)"
        )
    return parse_config(data, source, overrides)


def dump_config(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


__all__ = [
    "ConfigError",
    "CorpusConfig",
    "JobConfig",
    "MimicCorpusConfig",
    "ModelsConfig",
    "PhantomCorpusConfig",
    "RayConfig",
    "RunConfig",
    "apply_overrides",
    "dump_config",
    "load_config",
    "parse_config",
]
