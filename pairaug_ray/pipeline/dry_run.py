"""`pairaug run --dry-run`: check a job before it spends GPU hours, without loading a weight or
touching a GPU.

Checked, each as one line that names the config key:
- the config (it loaded and validated, or the command would not get here);
- the corpus: the published files of the layout it names (MIMIC-CXR-JPG's tables, MIMIC-IV's), and
  the report source of corpus.reports (its files and the columns the config names);
- every model reference the job will load: a local folder with a model in it, an s3:// prefix with
  objects under it, or a well-formed hub id (not fetched: that needs the network the job will have);
- the rewrite endpoint: allowed to receive reports, and its key variable named;
- every evaluation dataset's label file and image folder;
- the resources asked for against what the chart's values offer (`--values`), when given;
- the output folder: a probe object is written and deleted;
- the capacity the job needs: its work counted from the corpus and the config, in GPU- and
  CPU-hours at the measured rates of pipeline/capacity.py, and hours on the chart's GPUs.

Reachable-where-it-can-be-checked: a path on S3 is listed with the credentials the process has; an
error reaching it is a problem named with the key and the error.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pairaug_ray import storage
from pairaug_ray.config import JobConfig

OK, PROBLEM, NOTE = "ok", "PROBLEM", "note"


@dataclass(frozen=True)
class Check:
    status: str  # ok | PROBLEM | note
    key: str  # the config key (or area) checked
    message: str


def _exists(uri: str) -> tuple[bool, str | None]:
    """(exists, error reaching it)."""
    try:
        return storage.exists(uri), None
    except Exception as e:  # unreachable endpoint, bad credentials, malformed bucket name
        return False, f"{type(e).__name__}: {str(e)[:200]}"


def _has_objects(prefix: str) -> tuple[bool, str | None]:
    try:
        fs, path = storage.filesystem(prefix)
        return bool(fs.find(path, maxdepth=None, withdirs=False)[:1]), None
    except FileNotFoundError:
        return False, None
    except Exception as e:
        return False, f"{type(e).__name__}: {str(e)[:200]}"


def _files(key: str, root: str, names: list[str], what: str) -> list[Check]:
    out = []
    for name in names:
        uri = storage.join(storage.absolute(root), name)
        found, error = _exists(uri)
        if error:
            out.append(Check(PROBLEM, key, f"cannot reach {uri} ({error})"))
        elif not found:
            out.append(Check(PROBLEM, key, f"{uri} not found: is {key} the {what} folder?"))
    if not out:
        out.append(Check(OK, key, f"{root} has {', '.join(names)}"))
    return out


def check_model(key: str, ref: str | None) -> Check:
    """A model reference, checked without downloading it."""
    from pairaug_ray.models.refs import is_hub_id

    if not ref:
        return Check(PROBLEM, key, "no model named (set it, or have the job train one)")
    if storage.is_s3(ref):
        found, error = _has_objects(ref)
        if error:
            return Check(PROBLEM, key, f"cannot reach {ref} ({error})")
        if not found:
            return Check(PROBLEM, key, f"no objects under {ref}: sync the saved model there")
        return Check(OK, key, f"{ref} has objects (downloaded once per node when the job runs)")
    local = Path(ref.removeprefix("file://")).expanduser()
    if local.is_dir():
        markers = ("config.json", "model_index.json", "open_clip_config.json", "pytorch_model.bin")
        if any((local / m).is_file() for m in markers):
            return Check(OK, key, f"{ref}: a saved model folder")
        return Check(PROBLEM, key, f"{ref} is a folder without a saved model ({', '.join(markers[:2])}, ...)")
    if is_hub_id(ref):
        return Check(NOTE, key, f"{ref}: a hub id, fetched by each node at run time (needs network access)")
    return Check(PROBLEM, key, f"{ref!r} is not a folder here, an s3:// prefix or a hub id (org/name)")


def _models(cfg: JobConfig) -> list[Check]:
    m = cfg.models
    out = []
    if not (m.build_tiny or m.train_generator):  # every job with generate.branches draws images
        out.append(
            check_model(
                "generate.model" if cfg.generate.model else "models.diffusion",
                cfg.generate.model or m.diffusion,
            )
        )
    if not (m.build_tiny or m.train_scorer):
        out.append(
            check_model("score.model" if cfg.score.model else "models.scorer", cfg.score.model or m.scorer)
        )
    if cfg.train.init:
        out.append(check_model("train.init", cfg.train.init))
    for i, model in enumerate(cfg.evaluate.models):
        out.append(check_model(f"evaluate.models[{i}].path", model.path))
    return out


def _reports(cfg: JobConfig) -> list[Check]:
    from pairaug_ray.corpora.reports import check_fields, source_files

    rc = cfg.corpus.reports
    try:
        fmt, files = source_files(rc)
        check_fields(rc, fmt, files)
    except Exception as e:
        return [Check(PROBLEM, "corpus.reports", str(e)[:300])]
    return [
        Check(
            OK, "corpus.reports", f"{len(files)} {fmt} file(s) under {rc.path}; the named columns are there"
        )
    ]


def _corpus(cfg: JobConfig) -> list[Check]:
    c = cfg.corpus
    reports = _reports(cfg) if c.reports else []
    if c.kind == "reports":
        return reports
    return _pairs_corpus(cfg) + reports


def _pairs_corpus(cfg: JobConfig) -> list[Check]:
    c = cfg.corpus
    if c.kind == "phantom":
        return [Check(OK, "corpus", "the built-in phantom corpus (built by the job)")]
    if c.kind == "manifest":
        found, error = _exists(c.manifest)
        if error or not found:
            return [Check(PROBLEM, "corpus.manifest", f"{c.manifest}: {error or 'not found'}")]
        return [Check(OK, "corpus.manifest", f"{c.manifest} exists")]
    from pairaug_ray.corpora import mimic, mimic_iv

    mc = c.mimic
    names = [mimic.METADATA_CSV, mimic.SPLIT_CSV] + ([mimic.CHEXPERT_CSV] if mc.labels == "chexpert" else [])
    out = _files("corpus.mimic.root", mc.root, names, "MIMIC-CXR-JPG")
    out += _files("corpus.mimic.reports_root", mc.reports_root or mc.root, ["files"], "MIMIC-CXR reports")
    if mc.mimic_iv_root:
        out += _files("corpus.mimic.mimic_iv_root", mc.mimic_iv_root, [mimic_iv.PATIENTS_CSV], "MIMIC-IV")
    return out


def _rewrite(cfg: JobConfig) -> list[Check]:
    import os

    r = cfg.rewrite
    if r.backend != "openai":
        return [Check(OK, "rewrite.backend", f"{r.backend} (no endpoint)")]
    from pairaug_ray.models.openai_chat import endpoint_refusal

    o = r.openai
    out = []
    if reason := endpoint_refusal(o.base_url, o.allowed_hosts, o.allow_external):
        out.append(Check(PROBLEM, "rewrite.openai.base_url", reason))
    else:
        out.append(Check(OK, "rewrite.openai.base_url", f"{o.base_url} may receive reports"))
    if o.api_key_env and not os.environ.get(o.api_key_env):
        out.append(
            Check(
                NOTE,
                "rewrite.openai.api_key_env",
                f"{o.api_key_env} is not set here; the job's pods need it (from a Secret)",
            )
        )
    return out


def _evaluate(cfg: JobConfig) -> list[Check]:
    out = []
    datasets = list(cfg.evaluate.datasets)
    if cfg.evaluate.linear_probe.enabled and cfg.evaluate.linear_probe.dataset:
        datasets.append(cfg.evaluate.linear_probe.dataset)
    for d in datasets:
        key = f"evaluate dataset {d.name}"
        if d.kind == "manifest":
            out.append(Check(OK, key, f"{d.path or 'the job corpus'} (made by the job)"))
            continue
        for what, uri in (("path", d.path), ("images_root", d.images_root)):
            if uri is None:
                if what == "path":
                    out.append(Check(PROBLEM, key, f"{d.kind} needs its label file in path"))
                continue
            found, error = _exists(uri)
            if error or not found:
                out.append(Check(PROBLEM, f"{key}: {what}", f"{uri}: {error or 'not found'}"))
            else:
                out.append(Check(OK, f"{key}: {what}", f"{uri} exists"))
    return out


def _output(cfg: JobConfig) -> Check:
    probe = storage.join(cfg.run.output_dir, f".pairaug-dry-run-{uuid.uuid4().hex[:8]}")
    try:
        storage.write_text(probe, "dry run\n")
        storage.remove(probe, recursive=False)
    except Exception as e:
        return Check(
            PROBLEM,
            "run.output_dir",
            f"cannot write to {cfg.run.output_dir} ({type(e).__name__}: {str(e)[:200]})",
        )
    return Check(OK, "run.output_dir", f"{cfg.run.output_dir} is writable")


def _resources(cfg: JobConfig, values: dict[str, Any] | None) -> list[Check]:
    """What the job asks Ray for against the chart's worker groups (their largest pods and totals)."""
    if values is None:
        return [Check(NOTE, "resources", "not checked: pass --values with the chart's values file")]
    gpu = values.get("gpuWorkers") or {}
    cpu = values.get("cpuWorkers") or {}
    gpus_per_pod = float(gpu.get("gpusPerPod", 0)) if gpu.get("enabled", True) else 0.0
    max_gpus = gpus_per_pod * int(gpu.get("maxReplicas", 0)) if gpus_per_pod else 0.0
    pod_cpus = max(
        [float(str((g.get("resources") or {}).get("cpu", 0))) for g in (gpu, cpu) if g.get("enabled", True)]
        or [0]
    )
    out = []
    asks = [
        ("generate.num_gpus", cfg.generate.num_gpus, cfg.generate.num_cpus),
        ("score.num_gpus", cfg.score.num_gpus, cfg.score.num_cpus),
        ("evaluate.num_gpus", cfg.evaluate.num_gpus, cfg.evaluate.num_cpus),
        ("train (one worker)", 1.0 if cfg.train.use_gpu else 0.0, cfg.train.cpus_per_worker),
    ]
    for key, gpus, cpus in asks:
        if gpus > gpus_per_pod:
            out.append(
                Check(PROBLEM, key, f"an actor asks for {gpus:g} GPUs; the largest pod has {gpus_per_pod:g}")
            )
        elif cpus > pod_cpus:
            out.append(
                Check(PROBLEM, key, f"an actor asks for {cpus:g} CPUs; the largest pod has {pod_cpus:g}")
            )
    if cfg.train.use_gpu and cfg.train.num_workers > max_gpus:
        out.append(
            Check(
                PROBLEM,
                "train.num_workers",
                f"{cfg.train.num_workers} GPU workers, but gpuWorkers offers at most {max_gpus:g} GPUs "
                "(maxReplicas x gpusPerPod): the trainer would wait forever",
            )
        )
    if not out:
        out.append(
            Check(
                OK,
                "resources",
                f"every actor fits a pod; up to {max_gpus:g} GPUs, pods of up to {pod_cpus:g} CPUs",
            )
        )
    return out


def _count_pairs(cfg: JobConfig) -> tuple[int, str]:
    """Pairs in the splits rewrite draws from, and how that number was found."""
    c, splits = cfg.corpus, set(cfg.rewrite.splits)
    if c.kind == "phantom":
        p = c.phantom
        share = sum(
            f for f, s in zip(p.split_fractions, ("train", "validate", "test"), strict=True) if s in splits
        )
        return round(p.patients * sum(p.studies_per_patient) / 2 * share), "the phantom's settings"
    if c.kind == "manifest":
        from pairaug_ray.pairs import read_columns

        split = read_columns(c.manifest, ["split"]).column(0).to_pylist()
        return sum(s in splits for s in split), f"{c.manifest}"
    from pairaug_ray.corpora.mimic import load_index

    index = load_index(c.mimic)
    return int(index["split"].isin(splits).sum()), "MIMIC-CXR-JPG's metadata and split tables"


def _count_reports(cfg: JobConfig) -> tuple[int, str]:
    """Reports of corpus.reports (counted, or estimated from the file sizes for JSONL and CSV)."""
    from pairaug_ray.corpora.reports import source_files

    rc = cfg.corpus.reports
    fmt, files = source_files(rc)
    if fmt == "mimic":
        n, how = len(files), "report files"
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        n = sum(
            pq.read_metadata(storage.filesystem(f)[1], filesystem=storage.filesystem(f)[0]).num_rows
            for f in files
        )
        how = "Parquet footers"
    else:
        fs, _ = storage.filesystem(files[0])
        sizes = [fs.size(storage.filesystem(f)[1]) for f in files]
        with fs.open(storage.filesystem(files[0])[1], "rb") as f:
            sample = f.read(1 << 18)
        lines = max(1, sample.count(b"\n"))
        n, how = round(sum(sizes) / (len(sample) / lines)), "estimated from the file sizes"
    return (min(n, rc.limit) if rc.limit else n), how


def _capacity(cfg: JobConfig, values: dict[str, Any] | None) -> list[Check]:
    """The job's work and the hours it takes at measured rates (pipeline/capacity.py)."""
    from pairaug_ray.pipeline import capacity

    try:
        pairs, how_pairs = _count_pairs(cfg) if cfg.corpus.has_pairs else (0, "")
        reports, how_reports = _count_reports(cfg) if cfg.corpus.reports else (0, "")
    except Exception as e:  # the corpus checks above name what is wrong with it
        return [
            Check(
                NOTE,
                "capacity",
                f"not estimated: the corpus could not be counted ({type(e).__name__}: {str(e)[:120]})",
            )
        ]
    g = cfg.generate
    gpus = cpus = None
    if values is not None:
        gw, cw = values.get("gpuWorkers") or {}, values.get("cpuWorkers") or {}
        if gw.get("enabled", True):
            gpus = float(gw.get("gpusPerPod", 0)) * int(gw.get("maxReplicas", 0))
        if cw.get("enabled", True):
            cpus = float(str((cw.get("resources") or {}).get("cpu", 0))) * int(cw.get("maxReplicas", 0))
    elif g.num_gpus:
        gpus = len(g.branches) * g.max_actors * g.num_gpus
    counted = ", ".join(
        x
        for x in (
            f"{pairs:,} pairs ({how_pairs})" if pairs else "",
            f"{reports:,} reports ({how_reports})" if reports else "",
        )
        if x
    )
    lines = capacity.format_plan(capacity.plan(cfg, pairs, reports), gpus, cpus)
    return [
        Check(NOTE, "capacity", f"{counted or 'nothing'} in rewrite.splits {list(cfg.rewrite.splits)}")
    ] + [Check(NOTE, "capacity", line) for line in lines]


PLACEHOLDER = "YOUR-"  # what the shipped templates write where a user's bucket or name belongs


def _placeholders(node: Any, key: str = "") -> list[Check]:
    if isinstance(node, dict):
        return [c for k, v in node.items() for c in _placeholders(v, f"{key}.{k}" if key else k)]
    if isinstance(node, list):
        return [c for i, v in enumerate(node) for c in _placeholders(v, f"{key}[{i}]")]
    if isinstance(node, str) and PLACEHOLDER in node:
        return [Check(PROBLEM, key, f"{node!r} still holds the template's placeholder")]
    return []


def dry_run(cfg: JobConfig, values: dict[str, Any] | None = None) -> list[Check]:
    checks = [Check(OK, "config", f"valid: {cfg.run.name}")]
    checks += _placeholders(cfg.model_dump(mode="json"))
    for part in (_corpus, _models, _rewrite, _evaluate):
        checks += part(cfg)
    checks += _resources(cfg, values)
    checks += _capacity(cfg, values)
    checks.append(_output(cfg))
    return checks


def format_checks(checks: list[Check]) -> str:
    width = max(len(c.key) for c in checks)
    lines = [f"{c.status:<7} {c.key:<{width}}  {c.message}" for c in checks]
    problems = sum(c.status == PROBLEM for c in checks)
    lines.append(
        f"dry run: {problems} problem(s) in {len(checks)} checks"
        if problems
        else f"dry run: the job looks ready ({len(checks)} checks)"
    )
    return "\n".join(lines)


def load_values(paths: list[str]) -> dict[str, Any]:
    """The chart's values as Helm merges them: each file over the ones before, maps key by key, null drops a key."""
    import yaml

    merged: dict[str, Any] = {}
    for path in paths:
        data = yaml.safe_load(storage.read_text(path))
        if not isinstance(data, dict):
            raise ValueError(f"{path} is not a Helm values mapping")
        merged = _merge_values(merged, data)
    return merged


def _merge_values(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_values(out[key], value)
        else:
            out[key] = value
    return out
