"""The `eval-generator` job: the report card of a text-to-image generator (docs/generator.md).

tasks     held-out reports to draw (fidelity, findings shown), training reports to draw
          (memorisation), and IntraAug edits of held-out studies (the rules rewriter's intra mode:
          which findings change is known), written as a rewrite-style manifest
draw      the `generate` job on those tasks with the card's generator: actor pools, per-row errors,
          reruns resume
encode    Ray Data actors: every real and generated image through the configured encoder
measure   fidelity (Fréchet distance against the real-vs-real floor), findings shown (per-finding
          classifiers trained on real training images), edits (scores moved as stated, same
          patient), memorisation (nearest training image, near-duplicates, re-identification)
report    generator_report.json and generator_report.html (eval/card_report.py)
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pandas as pd

from pairaug_ray import images, progress, schema, storage
from pairaug_ray.config import ConfigError, GeneratorEncoderConfig, JobConfig
from pairaug_ray.eval import card_report
from pairaug_ray.eval import generator as measures
from pairaug_ray.manifest import write_manifest
from pairaug_ray.pairs import ManifestNotFoundError, read_columns
from pairaug_ray.pipeline.encoding import encode, encoder_ref
from pairaug_ray.pipeline.generator.job import _real_pairs
from pairaug_ray.runtime import init_ray
from pairaug_ray.stages.rewrite import row_seed
from pairaug_ray.text.labeler import label_report
from pairaug_ray.text.rewrite import rewrite_report
from pairaug_ray.text.train_text import training_text

log = logging.getLogger(__name__)

HELD_OUT, TRAIN, EDIT = "held_out", "train", "edit"
_REAL_COLUMNS = [
    schema.PAIR_ID,
    schema.PATIENT_ID,
    schema.STUDY_ID,
    schema.IMAGE_URI,
    schema.SPLIT,
    schema.STATUS,
    schema.REPORT,
    schema.FINDINGS,
    schema.IMPRESSION,
]


# -- what to grade, and with what -------------------------------------------------------------------


def generator_ref(cfg: JobConfig) -> tuple[str, int | None, str]:
    """(pipeline, image size, text) to grade: eval_generator.model, else the finetune-t2i run's latest
    pipeline (its size and text), else the augment job's generator."""
    e = cfg.eval_generator
    text = e.text or cfg.finetune_t2i.text
    if e.model:
        return e.model, e.size, text
    summary_uri = storage.join(cfg.t2i_dir(), cfg.finetune_t2i.name, "t2i_summary.json")
    if storage.exists(summary_uri):
        summary = json.loads(storage.read_text(summary_uri))
        if summary.get("pipeline"):
            return summary["pipeline"], e.size or summary.get("image_size"), text
    from pairaug_ray.pipeline.generate import model_ref

    return model_ref(cfg), e.size, text


# -- tasks ------------------------------------------------------------------------------------------


def read_real(cfg: JobConfig, root: str) -> pd.DataFrame:
    findings = cfg.eval_generator.findings
    unknown = [f for f in findings if f not in schema.CHEXPERT_OBSERVATIONS]
    if unknown:
        raise ConfigError(
            f"eval_generator.findings: {unknown} are not CheXpert observations ({', '.join(schema.CHEXPERT_OBSERVATIONS)})"
        )
    cols = [*_REAL_COLUMNS, *(schema.label_column(f) for f in findings)]
    df = read_columns(root, cols).to_pandas()
    return df[df[schema.STATUS] == schema.STATUS_OK].reset_index(drop=True)


def _sample(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    return df.sample(n=min(n, len(df)), random_state=seed).reset_index(drop=True) if n else df.iloc[:0]


def _changes(edits: Any, findings: list[str]) -> dict[str, int]:
    """Which of the graded findings the rewrite turned present (+1) or absent (-1)."""
    out = {}
    for ed in edits:
        if ed.observation in findings and (ed.before == 1) != (ed.after == 1):
            out[ed.observation] = 1 if ed.after == 1 else -1
    return out


def build_tasks(cfg: JobConfig, real: pd.DataFrame, text: str) -> tuple[list[dict], dict[str, dict]]:
    """Rewrite-style rows for the generate job, and per task what the card needs to know of it."""
    e, seed = cfg.eval_generator, cfg.run.seed
    findings = list(e.findings)
    held = real[real[schema.SPLIT] == e.held_out_split]
    train = real[real[schema.SPLIT] == schema.SPLITS[0]]
    if len(held) < 4:
        raise ConfigError(
            f"eval_generator.held_out_split {e.held_out_split!r} has {len(held)} readable pairs; the card needs 4 or more"
        )
    rows, info = [], {}

    def add(kind: str, src: dict, report: str, labels: dict, extra: dict | None = None) -> None:
        pid = schema.make_pair_id("generator-card", kind, src[schema.PAIR_ID])
        rows.append(
            {
                schema.PAIR_ID: pid,
                schema.PATIENT_ID: src[schema.PATIENT_ID],
                schema.REPORT: report,
                schema.SPLIT: src[schema.SPLIT],
                schema.STATUS: schema.STATUS_OK,
                schema.PARENT_ID: src[schema.PAIR_ID],
                **labels,
                **(extra or {}),
            }
        )
        info[pid] = {
            "set": kind,
            "parent": src[schema.PAIR_ID],
            "patient": src[schema.PATIENT_ID],
            "report": report,
        }

    def labels_of(src: dict) -> dict[str, Any]:
        # pandas reads a not-mentioned label as NaN; the manifest's is null.
        return {c: None if pd.isna(src[c]) else int(src[c]) for c in map(schema.label_column, findings)}

    for src in _sample(held, e.reports, seed).to_dict("records"):
        labels = labels_of(src)
        add(HELD_OUT, src, training_text(src, text), {**labels, schema.ORIGIN: schema.ORIGIN_INTER})
    for src in _sample(train, e.train_reports, seed).to_dict("records"):
        labels = labels_of(src)
        add(TRAIN, src, training_text(src, text), {**labels, schema.ORIGIN: schema.ORIGIN_INTER})
    made = 0
    for src in _sample(held, len(held), seed + 1).to_dict("records"):
        if made >= e.edits:
            break
        source_text = training_text(src, text)
        try:
            rw = rewrite_report(source_text, "intra", row_seed(seed, src[schema.PAIR_ID], 0))
        except (ValueError, TypeError) as err:
            log.info("no edit of %s: %s", src[schema.PAIR_ID], err)
            continue
        change = _changes(rw.edits, findings)
        if not change:
            continue  # the rewrite changed none of the graded findings: nothing to check
        new_labels = label_report(rw.text).as_row()
        add(
            EDIT,
            src,
            rw.text,
            {
                **{k: new_labels.get(k) for k in (schema.label_column(f) for f in findings)},
                schema.ORIGIN: schema.ORIGIN_INTRA,
                schema.SOURCE_REPORT: source_text,
                schema.SOURCE_IMAGE_URI: src[schema.IMAGE_URI],
            },
        )
        info[rows[-1][schema.PAIR_ID]]["change"] = change
        made += 1
    return rows, info


def _card_cfg(cfg: JobConfig, model: str, size: int | None) -> JobConfig:
    """The job config the generate job runs with: the card's generator, steps and size."""
    e, g = cfg.eval_generator, cfg.generate
    inter = g.inter.model_copy(
        update={
            "images_per_report": 1,
            "num_inference_steps": e.num_inference_steps,
            "guidance_scale": e.guidance_scale,
            "batch_size": e.batch_size,
        }
    )
    intra = g.intra.model_copy(
        update={
            "samples": 1,
            "num_inference_steps": e.num_inference_steps,
            "guidance_scale": e.guidance_scale,
        }
    )
    gen = g.model_copy(
        update={
            "model": model,
            "branches": [schema.ORIGIN_INTER, schema.ORIGIN_INTRA],
            "height": size or g.height,
            "width": size or g.width,
            "inter": inter,
            "intra": intra,
            "output": None,
        }
    )
    return cfg.model_copy(update={"generate": gen})


# -- the job ----------------------------------------------------------------------------------------


def eval_generator_job(cfg: JobConfig) -> dict[str, Any]:
    from pairaug_ray.pipeline.generate import generate_job

    init_ray(cfg.ray)
    e = cfg.eval_generator
    out_dir = cfg.generator_card_dir()
    findings = list(e.findings)
    model, size, text = generator_ref(cfg)
    kind, enc_path = encoder_ref(cfg, e.encoder)
    real_root = _real_pairs(cfg)
    real = read_real(cfg, real_root)

    with progress.stage("tasks", f"held-out split {e.held_out_split!r} of {real_root}") as shown:
        rows, info = build_tasks(cfg, real, text)
        tasks_root = storage.join(out_dir, "tasks")
        write_manifest(rows, tasks_root)
        counts = pd.Series([i["set"] for i in info.values()]).value_counts().to_dict()
        shown["line"] = (
            f"{counts.get(HELD_OUT, 0)} held-out and {counts.get(TRAIN, 0)} training reports to draw, "
            f"{counts.get(EDIT, 0)} edits"
        )
    gen_root = storage.join(out_dir, "generated")
    generate_job(_card_cfg(cfg, model, size), input_root=tasks_root, output_root=gen_root)
    generated = read_columns(
        gen_root,
        [schema.PAIR_ID, schema.REWRITE_ID, schema.IMAGE_URI, schema.GENERATED_SOURCE_URI, schema.STATUS],
    ).to_pandas()
    failed = int((generated[schema.STATUS] != schema.STATUS_OK).sum())
    generated = generated[generated[schema.STATUS] == schema.STATUS_OK]

    # Every image the card looks at, once: real training and held-out images, drawn images, and
    # the IntraAug sources (the generated source image, or the real one it was inverted from).
    used = real[real[schema.SPLIT].isin([schema.SPLITS[0], e.held_out_split])]
    frames = [
        pd.DataFrame(
            {schema.IMAGE_ID: "real:" + used[schema.PAIR_ID], schema.IMAGE_URI: used[schema.IMAGE_URI]}
        ),
        pd.DataFrame(
            {
                schema.IMAGE_ID: "gen:" + generated[schema.REWRITE_ID],
                schema.IMAGE_URI: generated[schema.IMAGE_URI],
            }
        ),
    ]
    edits = generated[generated[schema.GENERATED_SOURCE_URI].notna()]
    if cfg.generate.intra.source == "generated" and len(edits):
        frames.append(
            pd.DataFrame(
                {
                    schema.IMAGE_ID: "src:" + edits[schema.REWRITE_ID],
                    schema.IMAGE_URI: edits[schema.GENERATED_SOURCE_URI],
                }
            )
        )
    drawn_root, drawn_rows = read_drawn(cfg)
    if drawn_rows is not None:
        frames.append(
            pd.DataFrame(
                {
                    schema.IMAGE_ID: "drawn:" + drawn_rows[schema.PAIR_ID],
                    schema.IMAGE_URI: drawn_rows[schema.IMAGE_URI],
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    with progress.stage("encode", f"{len(frame)} images with {kind} ({enc_path})") as shown:
        encoded = encode(cfg, frame, kind, enc_path, e.encoder.batch_size)
        shown["line"] = f"{len(encoded)} of {len(frame)} images encoded"
    feats = dict(zip(encoded[schema.IMAGE_ID], encoded[schema.FEATURES], strict=True))
    class_feats, class_path = feats, None
    if e.classifier == "zero-shot":
        class_path = classifier_ref(cfg, kind, enc_path)
        if class_path != enc_path:
            with progress.stage("encode", f"{len(frame)} images with the classifier ({class_path})") as shown:
                again = encode(cfg, frame, "clip", class_path, e.encoder.batch_size)
                shown["line"] = f"{len(again)} of {len(frame)} images encoded"
            class_feats = dict(zip(again[schema.IMAGE_ID], again[schema.FEATURES], strict=True))
            feats = {k: v for k, v in feats.items() if k in class_feats}
    elif e.classifier == "pixels":
        # The independent grader: the images' own pixels, nothing any trained model made.
        with progress.stage("encode", f"{len(frame)} images as {e.pixel_size} px pixels") as shown:
            again = encode(cfg, frame, "pixels", str(e.pixel_size), e.encoder.batch_size)
            shown["line"] = f"{len(again)} of {len(frame)} images read"
        class_feats = dict(zip(again[schema.IMAGE_ID], again[schema.FEATURES], strict=True))
        feats = {k: v for k, v in feats.items() if k in class_feats}

    with progress.stage("measure", f"{len(findings)} findings") as shown:
        report, tables, gallery = measure(
            cfg, real, generated, info, feats, class_feats, class_path, augment_drawn=(drawn_root, drawn_rows)
        )
        report.update(
            {
                "generator": model,
                "image_size": size,
                "text": text,
                "encoder": {"kind": kind, "path": enc_path},
                "real": real_root,
                "failed_images": failed,
                "config": e.model_dump(mode="json"),
            }
        )
        shown["line"] = card_report.headline(report)
    with progress.stage("report", out_dir) as shown:
        report["paths"] = card_report.write(out_dir, report, tables, gallery)
        shown["line"] = report["paths"]["html"]
    return report


def read_drawn(cfg: JobConfig) -> tuple[str | None, pd.DataFrame | None]:
    """(root, rows) of the text-to-image images an augment job drew (eval_generator.drawn, else the
    run's score output when it exists), at most eval_generator.drawn_max of them, seeded."""
    e = cfg.eval_generator
    if e.drawn is None and e.model is not None:
        return None, None  # the run's own drawings are another generator's than the one graded
    root = e.drawn or cfg.score_dir()
    label_cols = [schema.label_column(f) for f in e.findings]
    try:
        rows = read_columns(
            root, [schema.PAIR_ID, schema.ORIGIN, schema.STATUS, schema.IMAGE_URI, *label_cols]
        ).to_pandas()
    except ManifestNotFoundError:
        if e.drawn is None:
            return None, None  # the run has not augmented: nothing drawn to grade
        raise ConfigError(f"eval_generator.drawn: no generate or score output at {root}") from None
    rows = rows[
        (rows[schema.STATUS] == schema.STATUS_OK)
        & rows[schema.ORIGIN].isin(schema.TEXT_TO_IMAGE_ORIGINS)
        & rows[schema.IMAGE_URI].notna()
    ].drop_duplicates(schema.PAIR_ID)
    if len(rows) < 2:
        log.warning("eval_generator.drawn: %d drawn images at %s; not graded", len(rows), root)
        return root, None
    return root, _sample(rows, e.drawn_max, cfg.run.seed).reset_index(drop=True)


def classifier_ref(cfg: JobConfig, encoder_kind: str, encoder_path: str) -> str:
    """The zero-shot classifier's CLIP: eval_generator.classifier_model, else the encoder's CLIP."""
    e = cfg.eval_generator
    if e.classifier_model is None:
        if encoder_kind != "clip":
            raise ConfigError(
                "eval_generator.classifier zero-shot needs eval_generator.classifier_model (a CLIP "
                f"folder or train run) when the encoder is {encoder_kind}"
            )
        return encoder_path
    return encoder_ref(
        cfg, GeneratorEncoderConfig(path=e.classifier_model), "eval_generator.classifier_model"
    )[1]


def finding_classifier(
    cfg: JobConfig, class_path: str | None, x_train: np.ndarray, y_train: np.ndarray, findings: list[str]
) -> tuple[Any, str]:
    """(the classifier, what it is) for the findings-shown check."""
    e = cfg.eval_generator
    if class_path is None:
        on = f"{e.pixel_size} px pixels" if e.classifier == "pixels" else "features"
        what = f"logistic regression per finding on {len(x_train)} real training images' {on}"
        return measures.FindingClassifier(x_train, y_train, findings, c=e.classifier_c), what
    from pairaug_ray.eval.zeroshot import ZeroShotModel

    model = ZeroShotModel(class_path)
    pos = model.class_embeddings(findings, cfg.evaluate.positive_templates)
    neg = model.class_embeddings(findings, cfg.evaluate.negative_templates)
    return measures.ZeroShotClassifier(pos, neg, findings), f"zero-shot CLIP {class_path} (no training)"


def measure(
    cfg: JobConfig,
    real: pd.DataFrame,
    generated: pd.DataFrame,
    info: dict[str, dict],
    feats: dict[str, Any],
    class_feats: dict[str, Any] | None = None,
    class_path: str | None = None,
    augment_drawn: tuple[str | None, pd.DataFrame | None] = (None, None),
) -> tuple[dict[str, Any], dict[str, list[dict]], dict[str, Any]]:
    """(the report's numbers, per-image tables, what the HTML page shows). `class_feats`: the
    zero-shot classifier's embeddings when its CLIP is not the encoder."""
    class_feats = feats if class_feats is None else class_feats
    e, seed = cfg.eval_generator, cfg.run.seed
    findings = list(e.findings)
    label_cols = [schema.label_column(f) for f in findings]

    def real_part(split: str) -> pd.DataFrame:
        part = real[(real[schema.SPLIT] == split) & ("real:" + real[schema.PAIR_ID]).isin(feats.keys())]
        return part.reset_index(drop=True)

    def stack(ids: Any) -> np.ndarray:
        return np.stack([feats[i] for i in ids]).astype(np.float64)

    train, held = real_part(schema.SPLITS[0]), real_part(e.held_out_split)
    if len(train) < 4 or len(held) < 4:
        raise ConfigError(
            f"too few readable real images to grade against: {len(train)} training, {len(held)} held-out"
        )
    x_train, x_held = stack("real:" + train[schema.PAIR_ID]), stack("real:" + held[schema.PAIR_ID])
    y_train = measures.label_matrix(train[label_cols].to_dict("records"), findings)
    y_held = measures.label_matrix(held[label_cols].to_dict("records"), findings)
    classifier, classifier_what = finding_classifier(
        cfg,
        class_path,
        np.stack([class_feats[i] for i in "real:" + train[schema.PAIR_ID]]),
        y_train,
        findings,
    )

    def score(ids: Any) -> np.ndarray:
        return classifier.scores(np.stack([class_feats[i] for i in ids]).astype(np.float64))

    verifier = measures.PatientVerifier(x_train, train[schema.PATIENT_ID].tolist())

    drawn = generated.assign(set=generated[schema.REWRITE_ID].map(lambda t: info.get(t, {}).get("set")))
    drawn = drawn[("gen:" + drawn[schema.REWRITE_ID]).isin(feats.keys())].reset_index(drop=True)
    uris = dict(zip(drawn[schema.REWRITE_ID], drawn[schema.IMAGE_URI], strict=True))
    report: dict[str, Any] = {
        "findings": findings,
        "counts": {"train_images": len(train), "held_out_images": len(held)},
    }
    tables: dict[str, list[dict]] = {}
    gallery: dict[str, Any] = {}

    # Findings shown: the classifier on generated images against the labels of their reports.
    held_drawn = drawn[drawn["set"] == HELD_OUT]
    if len(held_drawn) < 2:
        raise ConfigError(f"only {len(held_drawn)} held-out reports were drawn; the card needs 2 or more")
    x_gen = stack("gen:" + held_drawn[schema.REWRITE_ID])
    parents = real.set_index(schema.PAIR_ID)
    parent_ids = [info[t]["parent"] for t in held_drawn[schema.REWRITE_ID]]
    y_gen = measures.label_matrix(parents.loc[parent_ids, label_cols].to_dict("records"), findings)
    s_gen = score("gen:" + held_drawn[schema.REWRITE_ID])
    s_held = score("real:" + held[schema.PAIR_ID])
    report["findings_shown"] = {
        "classifier": classifier_what,
        "generated": measures.auc_summary(s_gen, y_gen, findings, seed=seed),
        "real": measures.auc_summary(s_held, y_held, findings, seed=seed),
    }
    report["counts"]["generated_held_out"] = len(held_drawn)
    gallery["rocs"] = {"generated": (s_gen, y_gen), "real held-out": (s_held, y_held)}
    drawn_root, drawn_rows = augment_drawn
    if drawn_rows is not None:
        # The images the augment job drew, against the reports they were drawn for: rewrites with
        # flipped findings and combinations no real report had, not only held-out real reports.
        graded = drawn_rows[("drawn:" + drawn_rows[schema.PAIR_ID]).isin(class_feats.keys())]
        if len(graded) >= 2:
            y_drawn = measures.label_matrix(graded[label_cols].to_dict("records"), findings)
            s_drawn = score("drawn:" + graded[schema.PAIR_ID])
            report["findings_shown"]["drawn"] = {
                **measures.auc_summary(s_drawn, y_drawn, findings, seed=seed),
                "source": drawn_root,
                "origins": {str(k): int(v) for k, v in graded[schema.ORIGIN].value_counts().items()},
            }
            gallery["rocs"]["drawn by the augment job"] = (s_drawn, y_drawn)
    gallery["by_finding"] = card_report.by_finding(
        findings,
        real_uris=held[schema.IMAGE_URI].tolist(),
        real_labels=y_held,
        generated_uris=[uris[t] for t in held_drawn[schema.REWRITE_ID]],
        generated_labels=y_gen,
    )

    # Fidelity: generated (drawn from half B's reports) vs real half A, beside real B vs real A.
    report["fidelity"] = measures.fidelity(
        x_held, held[schema.PAIR_ID].tolist(), x_gen, parent_ids, seed=seed
    )

    report["identity"] = {
        "verifier": "cosine similarity of encoder features; threshold at the equal error rate of "
        "same- vs other-patient pairs of real training images",
        "threshold": verifier.threshold,
        "equal_error_rate_train": verifier.equal_error_rate,
        "auc_held_out": verifier.auc(x_held, held[schema.PATIENT_ID].tolist()),
        "identification_threshold": verifier.identification_threshold,
        "identification_error_rate_train": verifier.identification_error_rate,
    }
    # Edits: the classifier's scores and the patient verifier between each edit and its source.
    edit_rows = drawn[drawn["set"] == EDIT]
    if len(edit_rows):
        report["edits"], tables["edits"], gallery["edits"] = _edits(
            cfg, edit_rows, info, feats, stack, score, verifier, findings, real
        )
        # The reference: real follow-up studies of held-out patients whose findings changed, scored
        # by the same classifier (how much a real change, and a real non-change, moves the scores).
        pairs, changes = measures.followup_pairs(
            held[schema.PATIENT_ID].tolist(), held[schema.STUDY_ID].fillna("").tolist(), y_held, findings
        )
        if pairs:
            a, b = [p[0] for p in pairs], [p[1] for p in pairs]
            moves = measures.edit_moves(s_held[a], s_held[b], changes, findings, e.edit_margin)
            same, _ = verifier.same(x_held[a], x_held[b])
            report["edits"]["real_followups"] = _edit_rates(moves, same)

    # Memorisation: each drawn image's nearest training image.
    report["memorization"], tables["neighbours"], gallery["memorization"] = _memorization(
        e, drawn, info, stack, x_train, x_held, train, verifier, uris
    )
    return report, tables, gallery


def _edits(cfg, edit_rows, info, feats, stack, score, verifier, findings, real):
    e = cfg.eval_generator
    tids = edit_rows[schema.REWRITE_ID].tolist()
    real_uris = dict(zip(real[schema.PAIR_ID], real[schema.IMAGE_URI], strict=True))
    if cfg.generate.intra.source == "generated":
        sources = {
            t: (f"src:{t}", u) for t, u in zip(tids, edit_rows[schema.GENERATED_SOURCE_URI], strict=True)
        }
    else:
        sources = {t: (f"real:{info[t]['parent']}", real_uris[info[t]["parent"]]) for t in tids}
    tids = [t for t in tids if sources[t][0] in feats]
    x_src, x_edit = stack([sources[t][0] for t in tids]), stack([f"gen:{t}" for t in tids])
    changes = [info[t]["change"] for t in tids]
    s_src, s_edit = score([sources[t][0] for t in tids]), score([f"gen:{t}" for t in tids])
    moves = measures.edit_moves(s_src, s_edit, changes, findings, e.edit_margin)
    same, sim = verifier.same(x_src, x_edit)
    edit_uris = dict(zip(edit_rows[schema.REWRITE_ID], edit_rows[schema.IMAGE_URI], strict=True))
    table = [
        {
            "task": t,
            "source_uri": sources[t][1],
            "edit_uri": edit_uris[t],
            "change": json.dumps(c),
            "changed_moved": m["changed"],
            "kept_stayed": m["kept"],
            "passed": m["passed"],
            "same_patient": bool(ok),
            "similarity": float(v),
            **{f"delta_{f}": float(d) for f, d in zip(findings, s_edit[i] - s_src[i], strict=True)},
        }
        for i, (t, m, c, ok, v) in enumerate(zip(tids, moves, changes, same, sim, strict=True))
    ]
    summary = {
        "source": cfg.generate.intra.source,
        "margin": e.edit_margin,
        **_edit_rates(moves, same),
        "similarity_mean": float(sim.mean()),
    }
    return summary, table, table[:8]


def _edit_rates(moves: list[dict], same: np.ndarray) -> dict[str, Any]:
    """How many edits (or real follow-ups) moved the changed findings, kept the others, both, and
    stayed the same patient."""
    return {
        "n": len(moves),
        "changed_moved_rate": float(np.mean([m["changed"] for m in moves])),
        "kept_stayed_rate": float(np.mean([m["kept"] for m in moves])),
        "passed_rate": float(np.mean([m["passed"] for m in moves])),
        "same_patient_rate": float(same.mean()),
    }


def _memorization(e, drawn, info, stack, x_train, x_held, train, verifier, uris):
    threshold = measures.calibrate_threshold(
        x_train, train[schema.PATIENT_ID].tolist(), e.near_duplicate_quantile
    )
    train_patients = train[schema.PATIENT_ID].to_numpy()
    summary: dict[str, Any] = {
        "near_duplicate_threshold": threshold,
        "quantile": e.near_duplicate_quantile,
        "reidentification_threshold": verifier.identification_threshold,
        "sets": {},
    }
    table, similarities = [], {}
    for name in (TRAIN, HELD_OUT):
        ids = drawn.loc[drawn["set"] == name, schema.REWRITE_ID].tolist()
        if not ids:
            continue
        idx, sim = measures.nearest(stack([f"gen:{t}" for t in ids]), x_train)
        reid = sim >= verifier.identification_threshold
        own = train_patients[idx] == np.asarray([info[t]["patient"] for t in ids])
        summary["sets"][f"drawn from {name.replace('_', '-')} reports"] = {
            "n": len(ids),
            "near_duplicate_rate": float((sim > threshold).mean()),
            "reidentified_rate": float(reid.mean()),
            "reidentified_as_report_patient_rate": float((reid & own).mean()),
            "nearest_similarity_mean": float(sim.mean()),
        }
        similarities[f"generated ({name.replace('_', '-')} reports)"] = sim
        for t, i, s in zip(ids, idx, sim, strict=True):
            nearest_uri = train[schema.IMAGE_URI].iloc[i]
            table.append(
                {
                    "task": t,
                    "set": name,
                    "image_uri": uris[t],
                    "nearest_pair_id": train[schema.PAIR_ID].iloc[i],
                    "nearest_uri": nearest_uri,
                    "cosine": float(s),
                    "pixel_distance": measures.pixel_distance(
                        images.read_image(uris[t]), images.read_image(nearest_uri)
                    ),
                    "near_duplicate": bool(s > threshold),
                    "reidentified": bool(s >= verifier.identification_threshold),
                }
            )
    # Reference: real held-out images (other patients) against the training images.
    _, sim_real = measures.nearest(x_held, x_train)
    summary["real held-out images"] = {
        "n": len(x_held),
        "near_duplicate_rate": float((sim_real > threshold).mean()),
        "reidentified_rate": float((sim_real >= verifier.identification_threshold).mean()),
        "nearest_similarity_mean": float(sim_real.mean()),
    }
    if table:
        summary["pixel_distance_of_nearest_mean"] = float(np.mean([r["pixel_distance"] for r in table]))
    similarities["real held-out"] = sim_real
    shown = sorted(table, key=lambda r: -r["cosine"])[: e.neighbours_shown]
    return (
        summary,
        table,
        {
            "similarities": similarities,
            "thresholds": (threshold, verifier.identification_threshold),
            "closest": shown,
        },
    )


def format_eval_generator(report: dict[str, Any]) -> str:
    f, fid = report["findings_shown"], report["fidelity"]
    lines = [
        f"graded {report['generator']} with {report['encoder']['kind']} features",
        f"  findings shown  mean AUC {card_report.interval_text(f['generated'])} on generated images, "
        f"{card_report.interval_text(f['real'])} on real held-out images",
    ]
    if d := f.get("drawn"):
        lines.append(
            f"                  {card_report.interval_text(d)} on {d['n']} images the augment job drew for its "
            "rewritten reports"
        )
    lines += [
        f"                  by {f['classifier']}",
        f"  fidelity        Fréchet distance {fid['frechet_distance']:.4g}, real-vs-real floor {fid['floor']:.4g} "
        f"({fid['ratio']:.2f}x)",
    ]
    if "edits" in report:
        ed = report["edits"]
        lines.append(
            f"  edits           {ed['n']}: changed findings moved {ed['changed_moved_rate']:.0%}, unchanged stayed "
            f"{ed['kept_stayed_rate']:.0%}, same patient {ed['same_patient_rate']:.0%}"
        )
        if ref := ed.get("real_followups"):
            lines.append(
                f"                  real follow-ups (reference) {ref['n']}: changed moved {ref['changed_moved_rate']:.0%}, "
                f"unchanged stayed {ref['kept_stayed_rate']:.0%}, same patient {ref['same_patient_rate']:.0%}"
            )
    for name, s in report["memorization"]["sets"].items():
        lines.append(
            f"  memorisation    {name}: near-duplicates {s['near_duplicate_rate']:.1%}, "
            f"re-identified {s['reidentified_rate']:.1%}"
        )
    ref = report["memorization"]["real held-out images"]
    lines.append(
        f"                  real held-out images (reference): near-duplicates {ref['near_duplicate_rate']:.1%}, "
        f"re-identified {ref['reidentified_rate']:.1%}"
    )
    ident = report["identity"]
    if ident["identification_error_rate_train"] >= card_report.WEAK_IDENTITY:
        lines.append(
            f"  note            the encoder re-identifies training patients at chance ({ident['identification_error_rate_train']:.0%} "
            "error on training images): the re-identification rates say little"
        )
    lines.append(f"  report          {report['paths']['html']}")
    return "\n".join(lines)
