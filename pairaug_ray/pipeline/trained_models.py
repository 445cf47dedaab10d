"""The models a job trains for itself: the generator and the scorer, trained once and then reused.

    generator  finetune-t2i on the real training pairs (the finetune_t2i block)   <out>/generator
    scorer     a CLIP on the real training pairs only: PairAug's MedCLIP, trained  <train dir>/scorer
               in this world (the train block without synthetic pairs or MedCutMix)

The augment job trains them first when models.train_generator / models.train_scorer ask for it, so
that `pairaug run` on the phantom corpus uses a generator that draws the findings and a scorer whose
scale PairAug's thresholds were written for. The study trains them the same way. A model is reused
when its run finished (its summary reached the steps asked for) with the same settings; a finished
run trained with other settings is refused with the keys that differ, never silently mixed in.
"""

from __future__ import annotations

import json
from typing import Any

from pairaug_ray import progress, storage
from pairaug_ray.config import ConfigError, JobConfig
from pairaug_ray.pairs import lineage

RUN_IDENTITY = "run_identity.json"  # beside each trained model's run: the settings it was trained with
SCORER_RUN = "scorer"
# Settings added after runs were recorded, with the behaviour those runs had: a recorded identity
# without the key matches a config that asks for that behaviour (and only that one).
BEFORE_THE_KEY_EXISTED = {
    ("train", "text_form"): "as_written",
    ("train", "synthetic_sources"): ["pair", "report"],
}


def derive(cfg: JobConfig, settings: dict[str, Any]) -> JobConfig:
    """A copy of `cfg` with dotted keys set (values as Python objects), validated again."""
    data = cfg.model_dump(mode="json")
    for key, value in settings.items():
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return JobConfig.model_validate(data)


def finished_summary(summary_uri: str, check) -> dict[str, Any] | None:
    """The summary at `summary_uri` if it exists and `check(summary)` says the run finished."""
    if not storage.exists(summary_uri):
        return None
    summary = json.loads(storage.read_text(summary_uri))
    return summary if check(summary) else None


def refuse_other_settings(
    run_dir: str, block: str, settings: dict[str, Any], seed: int, data: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The identity of the run at `run_dir` (its `block` settings, seed and, when given, how its
    training data was made); raises if the run recorded another one, naming the keys that differ.
    Write it with `storage.write_json` once the run is trained or reused."""
    identity = {block: settings, "seed": seed, **({"data": data} if data else {})}
    identity_uri = storage.join(run_dir, RUN_IDENTITY)
    if storage.exists(identity_uri):
        recorded = json.loads(storage.read_text(identity_uri))
        before = dict(recorded.get(block) or {})
        for (b, key), value in BEFORE_THE_KEY_EXISTED.items():
            # Only keys the caller names: a setting it leaves out is not compared.
            if b == block and key not in before and key in settings:
                before[key] = value
        if {**recorded, block: before} != identity:
            differ = sorted(k for k in {*settings, *before} if before.get(k) != settings.get(k))
            if recorded.get("seed") != seed:
                differ.append("run.seed")
            if recorded.get("data") != identity.get("data"):
                # The same path, other pairs: redrawn with other settings since the run trained.
                differ.append("the synthetic pairs' lineage")
            raise ConfigError(
                f"{run_dir} was trained with other settings "
                f"({', '.join(differ)} differ); move it away (or use a new output folder) "
                "to train it again"
            )
    return identity


def trained_generator(cfg: JobConfig) -> dict[str, Any]:
    """The finetune_t2i run's summary: trained now, resumed, or reused when it reached its steps
    with the same settings (more steps continue the run; other settings are refused)."""
    from pairaug_ray.pipeline.generator import finetune_t2i_job

    f = cfg.finetune_t2i
    run_dir = storage.join(cfg.t2i_dir(), f.name)
    settings = f.model_dump(mode="json", exclude={"steps"})
    identity = refuse_other_settings(run_dir, "finetune_t2i", settings, cfg.run.seed)
    done = finished_summary(
        storage.join(run_dir, "t2i_summary.json"),
        lambda s: (s.get("metrics") or {}).get("step", 0) >= f.steps,
    )
    if done:
        progress.say(f"{'generator':<{progress.WIDTH}} trained before: {done['pipeline']}")
    else:
        done = finetune_t2i_job(cfg)
    storage.write_json(storage.join(run_dir, RUN_IDENTITY), identity)
    return done


def train_or_reuse(cfg: JobConfig, runs_dir: str, name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The CLIP run `runs_dir/name` with `settings` applied to cfg: trained, resumed, or reused when
    it finished before with the same settings (one made with others is refused)."""
    from pairaug_ray.pipeline.train import train_job

    run_cfg = derive(cfg, {"train.name": name, "train.storage_path": runs_dir, **settings})
    run_dir = storage.join(runs_dir, name)
    # Settings name the synthetic pairs by path; their lineage says how they were made, so pairs
    # redrawn in place with other settings (generate.prompt, a new generator) train a new run.
    synthetic = run_cfg.train.synthetic
    identity = refuse_other_settings(
        run_dir,
        "train",
        run_cfg.train.model_dump(mode="json"),
        run_cfg.run.seed,
        data={"synthetic": lineage(synthetic)} if synthetic else None,
    )
    done = finished_summary(
        storage.join(run_dir, "train_summary.json"),
        lambda s: (
            bool(s.get("stopped_early"))  # trained until validation stopped improving
            or (s.get("total_steps") is not None and (s.get("metrics") or {}).get("step") == s["total_steps"])
        ),
    )
    if done:
        progress.say(
            f"{'train':<{progress.WIDTH}} {name}: trained before (step {(done.get('metrics') or {}).get('step')})"
        )
    else:
        done = train_job(run_cfg)
    storage.write_json(storage.join(run_dir, RUN_IDENTITY), identity)
    return done


def scorer_settings(cfg: JobConfig) -> dict[str, Any]:
    """The scorer is the train block's CLIP on the real pairs only."""
    return {
        "train.synthetic_origins": [],
        "train.synthetic": None,
        "train.medcutmix.enabled": False,
        "train.steps": cfg.models.scorer_steps or cfg.train.steps,
    }


def with_trained_models(cfg: JobConfig) -> tuple[JobConfig, dict[str, Any]]:
    """cfg with models.diffusion / models.scorer set to the models it asks to train (trained or
    reused here), and their summaries. A config that trains neither comes back unchanged."""
    m = cfg.models
    trained: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    if m.train_generator:
        trained["generator"] = trained_generator(cfg)
        settings["models.diffusion"] = trained["generator"]["pipeline"]
    if m.train_scorer:
        trained["scorer"] = train_or_reuse(cfg, cfg.train_dir(), SCORER_RUN, scorer_settings(cfg))
        settings["models.scorer"] = trained["scorer"]["model"]
    if not settings:
        return cfg, trained
    settings.update({"models.train_generator": False, "models.train_scorer": False})
    return derive(cfg, settings), trained
