"""The `prepare` job: make the real corpus and the models a run needs, and check them.

1. Corpus: build the phantom corpus, import MIMIC-CXR-JPG, or take an existing pair dataset; and
   import the reports without images (corpus.reports), beside those pairs or on their own.
   A corpus whose dataset.json records the same parameters is complete and is reused, so a rerun
   after a crash rebuilds only what did not finish.
2. Models: build the tiny random-weight models if asked, and resolve every configured model
   reference (local folder, s3:// prefix, hub id), failing early with a clear message.
3. Read the manifest back through Ray Data, check it against the pair schema, and summarise it.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from pairaug_ray import progress, schema, storage
from pairaug_ray.config import ConfigError, JobConfig, dump_config
from pairaug_ray.models.refs import resolve_model
from pairaug_ray.pairs import manifest_columns, read_info, summarize_root
from pairaug_ray.runtime import init_ray
from pairaug_ray.schema import ManifestSchemaError

log = logging.getLogger(__name__)

TINY_MARKER = "pairaug_tiny.json"


def prepare_corpus(cfg: JobConfig) -> str:
    root = cfg.corpus_dir()
    kind = cfg.corpus.kind
    if kind == "manifest":
        return root
    params = (cfg.corpus.phantom if kind == "phantom" else cfg.corpus.mimic).model_dump(mode="json")  # type: ignore[union-attr]
    if read_info(root).get(kind) == params:
        log.info("corpus at %s is complete with these parameters; reusing it", root)
        return root
    if kind == "phantom":
        from pairaug_ray.corpora.phantom import build_phantom

        log.info("building the phantom corpus (%d patients) into %s", cfg.corpus.phantom.patients, root)
        build_phantom(cfg.corpus.phantom, root)
    else:
        from pairaug_ray.corpora.mimic import import_mimic

        log.info("importing MIMIC-CXR-JPG from %s into %s", cfg.corpus.mimic.root, root)  # type: ignore[union-attr]
        import_mimic(cfg.corpus.mimic, root)  # type: ignore[arg-type]
    return root


def prepare_reports(cfg: JobConfig) -> str | None:
    """Import corpus.reports into a report-only pair dataset (reused when complete with the same
    settings); None when the corpus has no reports."""
    root = cfg.reports_dir()
    rc = cfg.corpus.reports
    if root is None or rc is None:
        return None
    if read_info(root).get("reports") == rc.model_dump(mode="json"):
        log.info("reports at %s are complete with these parameters; reusing them", root)
        return root
    from pairaug_ray.corpora.reports import import_reports

    log.info("importing reports from %s into %s", rc.path, root)
    import_reports(rc, root)
    return root


def prepare_tiny_models(cfg: JobConfig) -> dict[str, str]:
    from pairaug_ray.models.tiny import TINY_CLIP_DIR, TINY_SD_DIR, make_tiny_models

    out = cfg.tiny_models_dir()
    paths = {"diffusion": storage.join(out, TINY_SD_DIR), "scorer": storage.join(out, TINY_CLIP_DIR)}
    if all(storage.exists(storage.join(p, TINY_MARKER)) for p in paths.values()):
        return paths
    log.info("building tiny random-weight models into %s", out)
    if storage.is_local(out):
        make_tiny_models(storage.absolute(out), seed=cfg.run.seed)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            make_tiny_models(tmp, seed=cfg.run.seed)
            storage.upload_tree(tmp, out)
    return paths


def stage_model_ref(cfg: JobConfig, role: str, override: str | None, setting: str) -> str:
    """The model a stage uses: its own setting, else models.<role>, else the tiny one if built."""
    if override:
        return override
    if ref := getattr(cfg.models, role):
        return ref
    if cfg.models.build_tiny:
        return prepare_tiny_models(cfg)[role]
    raise ConfigError(f"no {role} model configured: set {setting} or models.{role} (or models.build_tiny)")


def model_refs(cfg: JobConfig) -> dict[str, str]:
    """The model references of the run: configured ones win over the tiny defaults."""
    refs = prepare_tiny_models(cfg) if cfg.models.build_tiny else {}
    for role in ("diffusion", "scorer"):
        if ref := getattr(cfg.models, role):
            refs[role] = ref
    return refs


def prepare(cfg: JobConfig) -> dict[str, Any]:
    init_ray(cfg.ray)
    with progress.stage("prepare", f"corpus ({cfg.corpus.kind}) and models") as shown:
        summary = _prepare(cfg)
        parts = []
        if c := summary["corpus"]:
            parts.append(f"{c['rows']} pairs, {c.get('patients', '?')} patients at {c['root']}")
        if r := summary.get("reports"):
            parts.append(f"{r['rows']} reports at {r['root']}")
        shown["line"] = f"{'; '.join(parts)}; models: {', '.join(summary['models']) or 'none'}"
    return summary


def _prepare(cfg: JobConfig) -> dict[str, Any]:
    root = prepare_corpus(cfg) if cfg.corpus.has_pairs else None
    reports = prepare_reports(cfg)
    refs = model_refs(cfg)
    resolved = {role: resolve_model(ref, cfg.models.cache_dir) for role, ref in refs.items()}

    for where in (root, reports):
        missing = [c for c in schema.CORE_COLUMNS if where and c not in manifest_columns(where)]
        if missing:
            raise ManifestSchemaError(f"manifest at {where} lacks core column(s) {missing}")
    summary: dict[str, Any] = {
        "run": cfg.run.name,
        "corpus": {"kind": cfg.corpus.kind, "root": root, **summarize_root(root)} if root else None,
        "models": {role: {"ref": r.ref, "path": r.path, "source": r.source} for role, r in resolved.items()},
    }
    if reports:
        summary["reports"] = {"root": reports, "source": cfg.corpus.reports.path, **summarize_root(reports)}  # type: ignore[union-attr]
    for role, r in resolved.items():
        if r.source != "hub":
            summary["models"][role]["components"] = describe_model(r.path)
    out = cfg.run.output_dir
    # Not summary.json: that file is the finished augment job's, and its absence means "not finished".
    storage.write_json(storage.join(out, "prepare.json"), summary)
    storage.write_text(storage.join(out, "config.yaml"), dump_config(cfg))
    return summary


def describe_model(path: str) -> dict[str, Any]:
    """Parameter counts per component of a saved model folder, read from its safetensors headers."""
    from safetensors import safe_open

    out: dict[str, Any] = {}
    for f in sorted(Path(path).rglob("*.safetensors")):
        n = 0
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():  # noqa: SIM118 (safe_open is not a dict)
                shape = st.get_slice(key).get_shape()
                count = 1
                for d in shape:
                    count *= d
                n += count
        component = f.parent.name if f.parent != Path(path) else "model"
        out[component] = out.get(component, 0) + n
    return {"parameters": out}


def format_summary(summary: dict[str, Any]) -> str:
    c = summary["corpus"] or {}
    lines = [f"run {summary['run']}"]
    if c:
        lines[0] += f": corpus ({c['kind']}) at {c['root']}"
        lines.append(
            f"  {c['rows']} pairs, {c.get('patients', '?')} patients, {c.get('studies', '?')} studies; "
            f"splits {c.get('split')}; status {c.get('status')}"
        )
    if r := summary.get("reports"):
        lines.append(
            f"  reports without images at {r['root']} (from {r['source']}): {r['rows']} reports; "
            f"splits {r.get('split')}; status {r.get('status')}"
        )
    if labels := c.get("labels"):
        lines.append(f"  {'observation':<28}{'pos':>6}{'neg':>6}{'unc':>6}{'null':>6}")
        for obs, n in labels.items():
            lines.append(
                f"  {obs:<28}{n['positive']:>6}{n['negative']:>6}{n['uncertain']:>6}{n['unmentioned']:>6}"
            )
    for role, m in summary["models"].items():
        params = m.get("components", {}).get("parameters", {})
        sizes = ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in params.items())
        lines.append(f"  model {role}: {m['path']} ({m['source']}){': ' + sizes if sizes else ''}")
    return "\n".join(lines)
