"""The `study` job: does PairAug make a better CLIP? Everything from one config, resumably.

    world      the phantom corpus (its test split is where every arm is judged)
    generator  finetune-t2i on the real training pairs                  <out>/generator
    scorer     a CLIP on the real training pairs only (MedCLIP's stand-in)
    augment    rewrite -> generate -> score -> prune with the two above   <out>/...
               + IntraAug from the real image, and an unpruned copy (if arms need them)
    arms       a CLIP per arm and seed, each train.steps optimiser steps   <study>/runs/<arm>-seed<k>
    evaluate   zero-shot on the test split (one embedding pass for every run) and linear probing
    compare    AUC per arm, observed differences to the baseline with t-intervals over paired seeds, table and plot

Every part is skipped on a rerun when its output is complete (the corpus, the generator's and
each CLIP's summary), and the augment stages resume by themselves, so a killed study continues
where it stopped. The scorer is the baseline arm's first seed unless study.scorer_steps asks for a
separate run: the same model PairAug's MedCLIP plays, trained on the real pairs only.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import time
from typing import Any

import numpy as np
import pandas as pd

from pairaug_ray import progress, schema, storage
from pairaug_ray.config import ConfigError, EvalDatasetConfig, JobConfig
from pairaug_ray.eval.metrics import format_interval
from pairaug_ray.eval.study import ARMS, arm_label, compare_arms, plot_study, study_table
from pairaug_ray.pipeline.trained_models import derive, train_or_reuse, trained_generator
from pairaug_ray.runtime import init_ray

log = logging.getLogger(__name__)

STUDY_FILE, TABLE_FILE, PLOT_FILE = "study.json", "study.md", "study.png"
REAL_SOURCE, UNPRUNED, ELSEWHERE = "real-source", "unpruned", "elsewhere"
# The study reads only each probe's observed AUC; its intervals are not used, so few resamples do.
PROBE_BOOTSTRAP = 200


def run_name(arm: str, seed: int) -> str:
    return f"{arm}-seed{seed}"


class Study:
    def __init__(self, cfg: JobConfig):
        self.cfg, self.s, self.out = cfg, cfg.study, cfg.study_dir()
        self.runs_dir = storage.join(self.out, "runs")
        self.seconds: dict[str, float] = {}
        self.world_root: str | None = None

    def timed(self, name: str, fn, *args, **kw):
        t0 = time.time()
        result = fn(*args, **kw)
        self.seconds[name] = round(self.seconds.get(name, 0.0) + time.time() - t0, 1)
        return result

    # --- the world, the generator, the scorer ---------------------------------------------------------

    def world(self) -> dict[str, Any]:
        from pairaug_ray.pairs import read_columns
        from pairaug_ray.pipeline.prepare import prepare_corpus

        with progress.stage("world", f"{self.cfg.corpus.kind} corpus") as shown:
            root = prepare_corpus(self.cfg)
            labels = self.cfg.train.validation_labels
            cols = [schema.SPLIT, schema.PATIENT_ID, *[schema.label_column(lb) for lb in labels]]
            frame = read_columns(root, cols).to_pandas()
            splits = {
                split: {
                    "pairs": int(len(part)),
                    "patients": int(part[schema.PATIENT_ID].nunique()),
                    "positives": {lb: int((part[schema.label_column(lb)] == 1).sum()) for lb in labels},
                }
                for split, part in frame.groupby(schema.SPLIT)
            }
            test = splits.get(self.s.split)
            if test is None:
                raise ConfigError(
                    f"study.split {self.s.split!r}: the corpus at {root} has splits {sorted(splits)}"
                )
            shown["line"] = (
                f"{len(frame)} pairs; {self.s.split}: {test['pairs']} images, positives "
                + ", ".join(f"{lb} {n}" for lb, n in test["positives"].items())
            )
        world = {"root": root, "splits": splits}
        self.world_root = root
        if self.s.regime == "report-rich":
            from pairaug_ray.pipeline.study_world import report_rich_config, split_world

            world["report_rich"] = split_world(self.cfg, root, self.out)
            # From here on the corpus is the image part, with the other patients' reports beside it.
            self.cfg = report_rich_config(self.cfg, self.out)
        return world

    def generator(self) -> dict[str, Any]:
        if self.s.generator:
            progress.say(f"{'generator':<{progress.WIDTH}} given: {self.s.generator}")
            return {"pipeline": self.s.generator, "given": True}
        return trained_generator(self.cfg)

    def train(self, name: str, settings: dict[str, Any]) -> dict[str, Any]:
        """One CLIP run under <study>/runs/<name>, as long as study.training says (reused when it
        finished before with the same settings; one made with others is refused: a study never mixes
        them)."""
        return train_or_reuse(self.cfg, self.runs_dir, name, {**self.length(), **settings})

    def length(self) -> dict[str, Any]:
        """The train settings of study.training (config.StudyConfig.training)."""
        s = self.s
        if s.training == "data-matched":
            return {"train.steps": None, "train.epochs": s.epochs}
        if s.training == "converged":
            return {
                "train.steps": s.steps,  # the cap
                "train.validation": True,
                "train.early_stopping_patience": s.patience,
                "train.checkpoint_every_steps": s.check_every,
            }
        return {"train.steps": s.steps}

    def arm_settings(self, arm: str, seed: int, synthetic: dict[str, str]) -> dict[str, Any]:
        a = ARMS[arm]
        report_rich = self.s.regime == "report-rich"
        settings = {
            "run.seed": seed,
            "train.synthetic_origins": list(a.origins),
            "train.synthetic": synthetic[a.synthetic] if a.origins else None,
            "train.medcutmix.enabled": a.medcutmix,
            # train.real_fraction < 1 runs every arm at that scale (the data-scale experiment); in the
            # report-rich world the low-data arm is the image part itself.
            "train.real_fraction": (
                self.s.low_data_fraction if a.low_data and not report_rich else self.cfg.train.real_fraction
            ),
        }
        # Settings that only some arms change are set only then: earlier runs keep their identity.
        if a.text:
            settings["train.text"] = a.text
        if tuple(a.sources) != ("pair", "report") and a.origins:
            settings["train.synthetic_sources"] = list(a.sources)
        elif report_rich and not arm.startswith("reports-") and {"inter", "as_written"} & set(a.origins):
            # An image-rich arm keeps to what it says: InterAug of the image part's pairs, not of the
            # report-only rows (the reports-* arms are those).
            settings["train.synthetic_sources"] = ["pair"]
        if a.real_all:
            settings["train.real"] = self.world_root
        return settings

    # --- augment ---------------------------------------------------------------------------------------

    def augment(self, cfg: JobConfig) -> dict[str, Any]:
        """The augment job with the trained models, plus the synthetic sets the arms ask for."""
        from pairaug_ray.pipeline.augment import augment_job
        from pairaug_ray.pipeline.generate import generate_job
        from pairaug_ray.pipeline.prune import prune_job
        from pairaug_ray.pipeline.score import score_job

        out = cfg.run.output_dir
        summary = augment_job(cfg)
        sets = {"pruned": cfg.synthetic_dir()}
        wanted = {ARMS[a].synthetic for a in self.s.arms if ARMS[a].origins}
        if REAL_SOURCE in wanted:
            # IntraAug from the patient's own image: DDIM inversion of the real radiograph, then
            # prompt-to-prompt toward the rewrite; scored and pruned with the same rule.
            # One branch: it gets as many actors as both branches had (one torch thread each, as
            # they had: a single actor with more threads used only one core).
            g = cfg.generate
            real_cfg = derive(
                cfg,
                {
                    "generate.branches": ["intra"],
                    "generate.intra.source": "real",
                    "generate.min_actors": g.min_actors * len(g.branches),
                    "generate.max_actors": g.max_actors * len(g.branches),
                },
            )
            gen, scored = storage.join(out, "generated-real-source"), storage.join(out, "scored-real-source")
            sets[REAL_SOURCE] = storage.join(out, "synthetic-real-source")
            generate_job(real_cfg, output_root=gen)
            score_job(real_cfg, input_root=gen, output_root=scored)
            summary["real_source"] = prune_job(real_cfg, input_root=scored, output_root=sets[REAL_SOURCE])
        if ELSEWHERE in wanted:
            summary[ELSEWHERE] = self.elsewhere(cfg)
            sets[ELSEWHERE] = summary[ELSEWHERE]["set"]
        if UNPRUNED in wanted:
            # Every pair that was drawn and scored: no threshold can drop a finite score.
            sets[UNPRUNED] = storage.join(out, "synthetic-unpruned")
            summary["unpruned"] = prune_job(cfg, tau=-math.inf, epsilon=math.inf, output_root=sets[UNPRUNED])
        summary["sets"] = sets
        return summary

    def elsewhere(self, cfg: JobConfig) -> dict[str, Any]:
        """reports-elsewhere: the report-only rows drawn as written by a generator trained on another
        world (study.elsewhere_generator, or trained here on the elsewhere phantom), scored and pruned
        by the study's scorer as every other set."""
        from pairaug_ray.pipeline.generate import generate_job
        from pairaug_ray.pipeline.prune import prune_job
        from pairaug_ray.pipeline.score import score_job
        from pairaug_ray.pipeline.study_world import elsewhere_config, records

        if self.s.elsewhere_generator:
            pipeline = self.s.elsewhere_generator
            progress.say(f"{'generator':<{progress.WIDTH}} elsewhere, given: {pipeline}")
        else:
            if self.cfg.corpus.kind != "manifest" or self.s.regime != "report-rich":
                raise ConfigError(
                    "arm reports-elsewhere needs study.elsewhere_generator or the report-rich phantom world"
                )
            progress.say(
                f"{'generator':<{progress.WIDTH}} elsewhere: {self.s.elsewhere_patients} other phantom patients "
                f"(seed {self.s.elsewhere_seed})"
            )
            pipeline = self.timed("generator", trained_generator, elsewhere_config(self.cfg, cfg, self.out))[
                "pipeline"
            ]
        out = cfg.run.output_dir
        # Only the reports drawn as written: the rows this arm trains on.
        rewrites = storage.join(out, "rewrites-as-written")
        if not storage.exists(storage.join(rewrites, "manifest")):
            from pairaug_ray.manifest import write_manifest
            from pairaug_ray.pairs import manifest_columns, read_columns

            rows = read_columns(cfg.rewrite_dir(), manifest_columns(cfg.rewrite_dir())).to_pandas()
            rows = rows[
                (rows[schema.ORIGIN] == schema.ORIGIN_AS_WRITTEN)
                & (rows[schema.SOURCE_KIND] == schema.SOURCE_KIND_REPORT)
                & (rows[schema.STATUS] == schema.STATUS_OK)
            ]
            write_manifest(records(rows), rewrites)
        ecfg = derive(cfg, {"models.diffusion": pipeline, "generate.branches": ["inter"]})
        gen, scored = storage.join(out, "generated-elsewhere"), storage.join(out, "scored-elsewhere")
        generate_job(ecfg, input_root=rewrites, output_root=gen)
        score_job(ecfg, input_root=gen, output_root=scored)
        pruned = storage.join(out, "synthetic-elsewhere")
        return {
            "pipeline": pipeline,
            "set": pruned,
            "prune": prune_job(ecfg, input_root=scored, output_root=pruned),
        }

    # --- evaluate ----------------------------------------------------------------------------------------

    def evaluate(self, models: dict[str, str]) -> tuple[pd.DataFrame, list[str], dict[str, np.ndarray], dict]:
        """Zero-shot scores of every run on the study split, and linear probing per run."""
        from pairaug_ray.eval.probe import linear_probe
        from pairaug_ray.models.refs import resolve_model
        from pairaug_ray.pipeline.evaluate import dataset_spec, embed_images, load_dataset, zero_shot

        cfg = self.cfg
        spec = dataset_spec(
            cfg, EvalDatasetConfig(name=f"phantom-{self.s.split}", kind="manifest", split=self.s.split)
        )
        data = load_dataset(spec)
        names = list(models)
        paths = [resolve_model(models[n]).path for n in names]
        with progress.stage(
            "evaluate", f"{len(names)} CLIPs on {len(data.frame)} {self.s.split} images"
        ) as shown:
            embs, kept = embed_images(cfg, data, paths)
            labels = data.labels
            y = kept[labels].to_numpy(float)
            scores, probes = {}, {}
            lp = cfg.evaluate.linear_probe
            for name, path, emb in zip(names, paths, embs, strict=True):
                scores[name] = zero_shot(cfg, [path], [emb], labels)
                probe = linear_probe(
                    emb,
                    y,
                    labels,
                    self.s.probe_fractions,
                    lp.split,
                    lp.seed,
                    lp.c_grid,
                    PROBE_BOOTSTRAP,
                    groups=kept[schema.PATIENT_ID].to_numpy() if schema.PATIENT_ID in kept else None,
                )
                probes[name] = {f: r["macro"]["auc"]["observed"] for f, r in probe["fractions"].items()}
                pred = pd.DataFrame(scores[name], columns=labels)
                pred.insert(0, schema.IMAGE_ID, kept[schema.IMAGE_ID].to_numpy())
                storage.write_text(
                    storage.join(self.out, "predictions", f"{name}.csv"), pred.to_csv(index=False)
                )
            shown["line"] = (
                f"{len(names)} runs scored, probed at {', '.join(f'{f:.0%}' for f in self.s.probe_fractions)}"
            )
        storage.write_text(
            storage.join(self.out, "predictions", "labels.csv"),
            kept[[schema.IMAGE_ID, *labels]].to_csv(index=False),
        )
        return kept, labels, scores, probes


def study_job(cfg: JobConfig) -> dict[str, Any]:
    init_ray(cfg.ray)
    if cfg.corpus.kind != "phantom":
        log.warning(
            "the study is built for the phantom corpus; on %s it runs, with its split %r",
            cfg.corpus.kind,
            cfg.study.split,
        )
    from pairaug_ray.pipeline.study_world import check_test_ledger, record_test_scoring

    st = Study(cfg)
    s = st.s
    design = cfg
    ledger = check_test_ledger(design, st.out)  # before any work: a second design may not see the test split
    started = time.time()
    world = st.timed("world", st.world)
    cfg = st.cfg  # report-rich: the image part and the other patients' reports from here on
    gen = st.timed("generator", st.generator)
    # The scorer: given, or the baseline's first seed (real pairs only), or a run of its own.
    base = ARMS[s.baseline]
    plain_base = not (
        base.origins
        or (base.low_data and s.regime != "report-rich")
        or base.medcutmix
        or base.text
        or base.real_all
    )
    if s.scorer:
        progress.say(f"{'scorer':<{progress.WIDTH}} given: {s.scorer}")
        scorer_name, scorer = None, {"model": s.scorer}
    elif s.scorer_steps is None and plain_base:
        scorer_name = run_name(s.baseline, s.seeds[0])
        scorer = st.timed("scorer", st.train, scorer_name, st.arm_settings(s.baseline, s.seeds[0], {}))
    else:
        scorer_name = "scorer"
        scorer = st.timed(
            "scorer",
            st.train,
            scorer_name,
            {
                "run.seed": s.seeds[0],
                "train.synthetic_origins": [],
                "train.medcutmix.enabled": False,
                "train.steps": s.scorer_steps or s.steps,
            },
        )
    acfg = derive(
        cfg,
        {"models.build_tiny": False, "models.diffusion": gen["pipeline"], "models.scorer": scorer["model"]},
    )
    augment = st.timed("augment", st.augment, acfg)
    runs: dict[str, dict[str, Any]] = {}
    for arm in s.arms:
        for seed in s.arm_seeds(arm):
            name = run_name(arm, seed)
            if name == scorer_name:
                runs[name] = scorer
                continue
            progress.say(
                f"{'arm':<{progress.WIDTH}} {arm_label(arm, s.low_data_fraction, s.regime)}, seed {seed}"
            )
            runs[name] = st.timed("arms", st.train, name, st.arm_settings(arm, seed, augment["sets"]))
    kept, labels, scores, probes = st.timed("evaluate", st.evaluate, {n: r["model"] for n, r in runs.items()})
    y = kept[labels].to_numpy(float)
    with progress.stage(
        "compare", f"{len(s.arms)} arms x up to {len(s.seeds)} seeds, {s.n_bootstrap} resamples"
    ) as shown:
        by_arm = {arm: [scores[run_name(arm, seed)] for seed in s.arm_seeds(arm)] for arm in s.arms}
        compared = compare_arms(y, by_arm, labels, s.baseline, s.n_bootstrap, ceiling=s.ceiling)
        parts = {
            "world": world,
            "generator": {"pipeline": gen.get("pipeline"), "steps": (gen.get("metrics") or {}).get("step")},
            "scorer": {"run": scorer_name, "model": scorer["model"]},
            "augment": {
                "prune": augment["stages"]["prune"],
                "sets": augment["sets"],
                "real_source": augment.get("real_source"),
                "elsewhere": augment.get(ELSEWHERE),
            },
            # Which split scored the arms, which split made each design decision, and how many
            # designs have seen the test split in this folder (study_world.py's ledger).
            "splits_used": {
                "scored": s.split,
                "model_selection": "validate" if s.training == "converged" else None,
                "decisions": [d.model_dump(mode="json") for d in s.decisions],
                "decided_on_the_scored_split": [
                    d.setting for d in s.decisions if d.split == s.split and d.study == "this"
                ],
            },
        }
        if s.split == "test":
            parts["splits_used"]["test_ledger"] = record_test_scoring(design, st.out, ledger)
        study = _study_record(cfg, st.s, parts, runs, compared, scores, probes, y, labels)
        study["seconds"] = {**st.seconds, "total": round(time.time() - started, 1)}
        storage.write_json(storage.join(st.out, STUDY_FILE), study)
        table = study_table(study)
        storage.write_text(storage.join(st.out, TABLE_FILE), table + "\n")
        storage.write_bytes(storage.join(st.out, PLOT_FILE), plot_study(study))
        gains = [a for a, v in compared.items() if v.get("difference", {}).get("gain")]
        shown["line"] = f"gains over '{s.baseline}': {', '.join(gains) or 'none'}"
    study["table"] = table
    study["outputs"] = {
        k: storage.join(st.out, f)
        for k, f in (("study", STUDY_FILE), ("table", TABLE_FILE), ("plot", PLOT_FILE))
    }
    return study


def _study_record(cfg, s, parts, runs, compared, scores, probes, y, labels) -> dict[str, Any]:
    """study.json: the parts (world, generator, scorer, augment), then every arm's seeds and comparison."""
    from pairaug_ray.eval.metrics import evaluate as evaluate_metrics

    arms = {}
    for arm in s.arms:
        seeds = {}
        for seed in s.arm_seeds(arm):
            name = run_name(arm, seed)
            zs = evaluate_metrics(y, scores[name], labels, s.n_bootstrap)
            trained = runs[name]
            seeds[str(seed)] = {
                "run": trained["run"],
                # How long it trained (study.training), and the checkpoint evaluated.
                "steps": (trained.get("metrics") or {}).get("step"),
                "epochs": (trained.get("metrics") or {}).get("epoch"),
                "stopped_early": trained.get("stopped_early"),
                "best": trained.get("best"),
                "zero_shot": {
                    "macro": zs["macro"]["auc"],
                    "per_label": {lb: v["auc"] for lb, v in zs["per_label"].items()},
                },
                "probe": probes[name],
            }
        data = runs[run_name(arm, s.seeds[0])]["data"]
        arms[arm] = {
            "label": arm_label(arm, s.low_data_fraction, s.regime),
            "pairs": {
                "real": data["real"]["pairs"],
                "synthetic": (data.get("synthetic") or {}).get("pairs", 0),
            },
            "seeds": seeds,
            **compared[arm],
        }
    return {
        "title": f"PairAug study ({s.regime}) on the {cfg.corpus.kind} corpus: {len(s.arms)} arms x up to {len(s.seeds)} seeds",
        "baseline": s.baseline,
        "labels": labels,
        "test_images": int(len(y)),
        "config": s.model_dump(mode="json"),
        "job": cfg.model_dump(mode="json"),
        **parts,
        "arms": arms,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
    }


def format_study(study: dict[str, Any]) -> str:
    s = study["config"]
    lines = [
        f"study: {len(study['arms'])} arms x {len(s['seeds'])} seeds on {study['test_images']} {s['split']} images "
        f"({study['seconds']['total'] / 60:.0f} min)",
    ]
    for arm in study["arms"].values():
        d = arm.get("difference")
        versus = "baseline"
        if d is not None:
            m = d["macro"]
            versus = (
                "vs baseline n/a"
                if m.get("lower") is None
                else f"vs baseline {m['observed']:+.4f} ({m['lower']:+.4f} to {m['upper']:+.4f})"
            ) + (" gain" if d["gain"] else (" loss" if d["loss"] else ""))
        lines.append(f"  {arm['label']:<34} AUC {format_interval(arm['pooled']['macro'])}   {versus}")
    for key, path in study["outputs"].items():
        lines.append(f"  {key:<6} {path}")
    return "\n".join(lines)
