"""The generate job on the tiny pipeline: both branches, determinism, resume, errors, GPU placement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pairaug_ray import images, schema, storage
from pairaug_ray.config import ConfigError, parse_config
from pairaug_ray.manifest import read_manifest, write_manifest
from pairaug_ray.pipeline.generate import generate_job

SIZE, STEPS = 64, 5  # 5 steps: the self-replace window (0.2) covers one step
LONG_REPORT = " ".join(["there is a small left pleural effusion with adjacent atelectasis."] * 12)


@pytest.fixture(scope="module")
def rewrites(ray_local, phantom_root, tmp_path_factory) -> str:
    """Four InterAug and four IntraAug rewrites of phantom reports (one with an over-long report),
    made by the rules back-end in this process (the rewrite job is tests/test_rewrite.py's)."""
    from pairaug_ray.stages.rewrite import RulesRewriter, expand_tasks

    cfg = parse_config({"rewrite": {"modes": ["inter", "intra"], "min_words": 10}})
    real = [r for r in read_manifest(phantom_root).take_all() if r[schema.SPLIT] == "train"][:12]
    tasks = expand_tasks(pa.Table.from_pylist(real), cfg=cfg.rewrite)
    rows = [r for r in RulesRewriter(cfg.rewrite, run_seed=0)(tasks).to_pylist() if r[schema.STATUS] == "ok"]
    pick = [r for r in rows if r[schema.ORIGIN] == "inter"][:4] + [
        r for r in rows if r[schema.ORIGIN] == "intra"
    ][:4]
    assert len(pick) == 8
    pick[0] = {**pick[0], schema.REPORT: LONG_REPORT}
    root = str(tmp_path_factory.mktemp("rw") / "subset")
    write_manifest(pick, root)
    return root


def _cfg(tmp_path, tiny_models, **generate):
    gen = {
        "height": SIZE,
        "width": SIZE,
        "num_gpus": 0,
        "num_cpus": 0.5,
        "max_actors": 1,
        "inter": {"num_inference_steps": STEPS, "batch_size": 2},
        "intra": {"num_inference_steps": STEPS},
        **generate,
    }
    return parse_config(
        {
            "run": {"output_dir": str(tmp_path / "run"), "seed": 5},
            "models": {"diffusion": tiny_models["diffusion"]},
            "generate": gen,
        }
    )


@pytest.fixture(scope="module")
def generated(rewrites, tiny_models, tmp_path_factory):
    """Both branches on one CPU actor each; shared by the tests below (a generate job costs ~15 s)."""
    cfg = _cfg(tmp_path_factory.mktemp("gen"), tiny_models)
    summary = generate_job(cfg, input_root=rewrites)
    return cfg, summary, read_manifest(cfg.generate_dir()).take_all()


def _image_names(rows: list[dict]) -> dict[str, str]:
    """pair_id -> the PNG's name, which is the hash of its bytes."""
    return {r[schema.PAIR_ID]: r[schema.IMAGE_URI].rsplit("/", 1)[-1] for r in rows}


def test_both_branches_write_images_and_provenance(generated, rewrites, tiny_models):
    cfg, summary, rows = generated
    assert summary["rows"] == len(rows) == 8 and {r[schema.STATUS] for r in rows} == {"ok"}
    by_origin = {o: [r for r in rows if r[schema.ORIGIN] == o] for o in ("inter", "intra")}
    assert len(by_origin["inter"]) == len(by_origin["intra"]) == 4
    for r in rows:
        img = images.read_image(r[schema.IMAGE_URI])
        assert img.shape == (SIZE, SIZE) and img.dtype == np.uint8
        assert r[schema.REWRITE_ID] and r[schema.PARENT_ID] and r[schema.REPORT]
        p = r[schema.PROVENANCE]
        params = json.loads(p["params"])
        assert p["stage"] == r[schema.ORIGIN] and p["backend"] == "diffusers" and p["seed"] is not None
        assert (
            params["scheduler"] == "pndm"
            and params["num_inference_steps"] == STEPS
            and params["guidance_scale"] == 4.0
        )
        assert params["device"] == "cpu" and params["dtype"] == "float32"
    for r in by_origin["intra"]:
        params = json.loads(r[schema.PROVENANCE]["params"])
        # 64 px: latent 8x8, maps of 8x8, 4x4, 2x2: all 10 cross and all 10 self layers are selected.
        assert params["hooked_layers"] == 20 and params["unet_calls"] == STEPS + 1
        assert (
            params["controller"] == "refine"
            and params["cross_replace"] == 0.5
            and params["self_replace"] == 0.2
        )
        assert images.read_image(r[schema.GENERATED_SOURCE_URI]).shape == (SIZE, SIZE)
        assert r[schema.GENERATED_SOURCE_URI] != r[schema.IMAGE_URI]
    long_row = next(r for r in rows if r[schema.REPORT] == LONG_REPORT)
    assert json.loads(long_row[schema.PROVENANCE]["params"])["truncated_tokens"] > 0  # recorded, not silent

    # A rerun skips everything (and starts no actors); other settings for the same output are refused.
    files = storage.list_files(storage.join(cfg.generate_dir(), "manifest"), ".parquet")
    assert generate_job(cfg, input_root=rewrites)["rows"] == 8
    assert storage.list_files(storage.join(cfg.generate_dir(), "manifest"), ".parquet") == files
    other = _cfg(Path(cfg.run.output_dir).parent, tiny_models, scheduler="ddim")
    with pytest.raises(ConfigError, match="holds generate output made with other settings"):
        generate_job(other, input_root=rewrites)


def test_actors_are_placed_on_logical_gpus_and_draw_the_same_images(
    generated, rewrites, tiny_models, tmp_path
):
    """Two InterAug actors on logical GPUs instead of one CPU actor: every image is the same, bit for
    bit (each image's generator is seeded from its pair id, whatever its actor and batch-mates)."""
    cfg = _cfg(tmp_path, tiny_models, num_gpus=1, max_actors=2, branches=["inter"])
    generate_job(cfg, input_root=rewrites)
    rows = read_manifest(cfg.generate_dir()).take_all()
    assert len(rows) == 4
    ids = {tuple(json.loads(r[schema.PROVENANCE]["params"])["gpu_ids"]) for r in rows}
    assert ids and all(len(i) == 1 and i[0] in ("0", "1") for i in ids)  # one whole GPU per actor
    assert all(json.loads(r[schema.PROVENANCE]["params"])["device"] == "cpu" for r in rows)  # no CUDA here
    inter = [r for r in generated[2] if r[schema.ORIGIN] == "inter"]
    assert _image_names(rows) == _image_names(inter)  # content-hash names: identical bytes


def test_real_source_inverts_the_patient_image(rewrites, tiny_models, tmp_path):
    """IntraAug from the DDIM inversion of the real image, the stage called in this process (the job
    around it is the same as for a generated source, tested above)."""
    from pairaug_ray.stages.generate import GenerateIntra, expand_image_tasks

    cfg = _cfg(
        tmp_path, tiny_models, branches=["intra"], intra={"num_inference_steps": STEPS, "source": "real"}
    )
    stage = GenerateIntra(
        cfg.generate, tiny_models["diffusion"], cfg.models.cache_dir, 5, str(tmp_path / "out")
    )
    tasks = expand_image_tasks(pa.Table.from_pylist(read_manifest(rewrites).take_all()), cfg=cfg.generate)
    rows = [r for i in range(tasks.num_rows) for r in stage(tasks.slice(i, 1)).to_pylist()]
    assert len(rows) == 4 and {r[schema.STATUS] for r in rows} == {"ok"}
    for r in rows:
        params = json.loads(r[schema.PROVENANCE]["params"])
        assert params["source"] == "real" and params["scheduler"] == "ddim" and params["unet_calls"] == STEPS
        assert 0.0 <= params["inversion_reconstruction_error"] <= 1.0


def test_oom_halves_the_batch_and_bad_rows_fail_alone(rewrites, tiny_models, tmp_path):
    from pairaug_ray.stages.generate import GenerateInter, expand_image_tasks

    cfg = _cfg(tmp_path, tiny_models, inter={"num_inference_steps": STEPS, "batch_size": 4})
    stage = GenerateInter(
        cfg.generate, tiny_models["diffusion"], cfg.models.cache_dir, 0, str(tmp_path / "out")
    )
    real_pipe, calls = stage.pipe, []

    class FlakyPipe:
        def __getattr__(self, name):
            return getattr(real_pipe, name)

        def __call__(self, prompts, **kw):
            calls.append(len(prompts))
            if len(prompts) > 1:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            if "POISON" in prompts[0]:
                raise ValueError("cannot draw this one")
            return real_pipe(prompts, **kw)

    stage.pipe = FlakyPipe()
    tasks = read_manifest(rewrites).filter(lambda r: r[schema.ORIGIN] == "inter").take_all()
    tasks[2] = {**tasks[2], schema.REPORT: "POISON " + tasks[2][schema.REPORT]}
    table = expand_image_tasks(pa.Table.from_pylist(tasks), cfg=cfg.generate)
    out = {r[schema.REPORT]: r for r in stage(table).to_pylist()}
    assert calls[:3] == [4, 2, 1]  # halved down to single images
    bad = next(r for k, r in out.items() if k.startswith("POISON"))
    assert bad[schema.STATUS] == "error" and "ValueError: cannot draw this one" in bad[schema.ERROR]
    good = [r for k, r in out.items() if not k.startswith("POISON")]
    assert len(good) == 3 and all(r[schema.STATUS] == "ok" for r in good)
    assert all(r[schema.PROVENANCE]["attempts"] == 3 for r in good)  # batch of 4 -> 2 -> 1


def test_too_many_cpus_reserved_is_refused(rewrites, tiny_models, tmp_path, monkeypatch):
    from pairaug_ray import runtime
    from pairaug_ray.config import parse_config as parse
    from pairaug_ray.pipeline.generate import check_local_cpus
    from pairaug_ray.pipeline.train.job import check_train_cpus

    cfg = _cfg(tmp_path, tiny_models, num_cpus=1.0)
    with pytest.raises(ConfigError, match="leaving none for reading and writing"):
        generate_job(cfg, input_root=rewrites)
    greedy = parse({"train": {"num_workers": 8, "cpus_per_worker": 4}}).train
    with pytest.raises(ConfigError, match="exceeds the cluster's 2 CPUs"):
        check_train_cpus(greedy)
    # A joined cluster (a Ray job, an address) is not judged by its size now: idle and autoscaling, it
    # may hold 0 CPUs until the job's own demand brings workers up.
    monkeypatch.setattr(runtime, "_started_local", False)
    check_local_cpus(cfg)
    check_train_cpus(greedy)


def test_demographic_prompts_and_balanced_new_patients(rewrites, tiny_models, tmp_path):
    """generate.prompt: RoentGen-v2's prefix ("52 year old WHITE female. <report>") is what the
    pipeline draws (its hash is the row's prompt hash, and the image differs from the bare report's),
    and a target draws InterAug's new patients, recorded on the rows."""
    from pairaug_ray.stages.generate import GenerateInter, expand_image_tasks
    from pairaug_ray.text.demographics import generation_prompt

    rows = [r for r in read_manifest(rewrites).take_all() if r[schema.ORIGIN] == "inter"][1:3]
    for r in rows:
        r.update({schema.SEX: "M", schema.AGE: 71, schema.RACE: "HISPANIC"})
    table = pa.Table.from_pylist(rows)

    def draw(prompt):
        cfg = _cfg(tmp_path, tiny_models, branches=["inter"], prompt=prompt)
        stage = GenerateInter(
            cfg.generate, tiny_models["diffusion"], cfg.models.cache_dir, 5, str(tmp_path / "o")
        )
        return stage(expand_image_tasks(table, cfg=cfg.generate)).to_pylist()

    bare = draw({"demographics": False})
    own = draw({"demographics": True})
    target = {"sex": {"F": 1}, "race": {"WHITE": 1, "BLACK": 0}, "age_bands": [[50, 52, 1]]}
    new = draw({"demographics": True, "target": target})
    for b, o, n, src in zip(bare, own, new, rows, strict=True):
        assert b[schema.PROVENANCE]["prompt_hash"] == schema.text_hash(src[schema.REPORT])
        want = generation_prompt(src[schema.REPORT], "M", 71, "HISPANIC")
        assert want.startswith("71 year old HISPANIC male. ")
        assert o[schema.PROVENANCE]["prompt_hash"] == schema.text_hash(want)
        assert (o[schema.SEX], o[schema.AGE], o[schema.RACE]) == ("M", 71, "HISPANIC")  # the source patient
        assert n[schema.SEX] == "F" and n[schema.RACE] == "WHITE" and 50 <= n[schema.AGE] <= 52
        drawn = generation_prompt(src[schema.REPORT], "F", n[schema.AGE], "WHITE")
        assert n[schema.PROVENANCE]["prompt_hash"] == schema.text_hash(drawn)
        pictures = [images.read_image(r[schema.IMAGE_URI]).astype(float) for r in (b, o)]
        assert np.abs(pictures[0] - pictures[1]).mean() > 1  # the prefix reaches the text encoder


def test_demographic_prefix_and_target_draws():
    from pairaug_ray.text.demographics import demographic_prefix, draw_demographics

    assert demographic_prefix("F", 28, "WHITE") == "28 year old WHITE female. "
    assert demographic_prefix(None, 64, None) == "64 year old patient. "
    assert demographic_prefix("M", None, None) == "male. "
    assert demographic_prefix(None, float("nan"), None) == ""
    draws = [
        draw_demographics(f"img{i}", {"F": 1, "M": 3}, {"ASIAN": 1, "BLACK": 1}, [(20, 29, 1), (70, 79, 1)])
        for i in range(4000)
    ]
    assert draws[7] == draw_demographics(
        "img7", {"F": 1, "M": 3}, {"ASIAN": 1, "BLACK": 1}, [(20, 29, 1), (70, 79, 1)]
    )
    assert 0.72 < sum(d["sex"] == "M" for d in draws) / 4000 < 0.78
    assert 0.47 < sum(d["race"] == "ASIAN" for d in draws) / 4000 < 0.53
    ages = [d["age"] for d in draws]
    assert all(20 <= a <= 29 or 70 <= a <= 79 for a in ages) and {20, 29, 70, 79} <= set(ages)
    assert draw_demographics("x") == {"sex": None, "race": None, "age": None}


def test_prompts_without_denials():
    """generate.prompt.drop_denials: InterAug is prompted without the sentences that only deny
    findings (generators draw the words, negated or not: docs/study.md); the rest stays."""
    from pairaug_ray.config import GenerateConfig
    from pairaug_ray.text.prompt_text import without_denials

    assert not GenerateConfig().prompt.drop_denials
    assert without_denials("No pleural effusion. Mild cardiomegaly.") == "Mild cardiomegaly."
    assert (
        without_denials("New moderate right pleural effusion. No pneumothorax.")
        == "New moderate right pleural effusion."
    )
    assert without_denials("The previously seen effusion has resolved. Stable nodule.") == "Stable nodule."
    assert without_denials("No acute cardiopulmonary process.") == "No acute cardiopulmonary process."
    assert without_denials("No evidence of pleural effusion. There is no pneumothorax.") == ""


def test_prompt_settings_are_part_of_the_output_identity(tmp_path):
    """An output drawn with other prompts is refused on a rerun instead of resumed with its old
    images (changing generate.prompt.drop_denials once resumed silently). Outputs written before
    the prompt keys existed still resume, and an IntraAug-only output ignores InterAug's keys."""
    from pairaug_ray.pairs import write_info
    from pairaug_ray.pipeline.generate import output_identity
    from pairaug_ray.pipeline.runner import check_output_identity

    def identity(branches, **prompt):
        cfg = parse_config(
            {"generate": {"branches": branches, "prompt": prompt}, "run": {"output_dir": str(tmp_path)}}
        )
        return output_identity(cfg, "tiny")

    assert "prompt" not in identity(["inter", "intra"])  # the defaults: as recorded before the keys
    out = str(tmp_path / "generated")
    write_info(out, {"generate": identity(["inter", "intra"])})
    check_output_identity(out, "generate", identity(["inter", "intra"]))
    with pytest.raises(ConfigError, match=r"other settings \(prompt differ\)"):
        check_output_identity(out, "generate", identity(["inter", "intra"], drop_denials=True))
    with pytest.raises(ConfigError, match=r"other settings \(prompt differ\)"):
        check_output_identity(out, "generate", identity(["intra"], demographics=True))
    write_info(out, {"generate": identity(["intra"])})
    check_output_identity(out, "generate", identity(["intra"], drop_denials=True))

    drawn = str(tmp_path / "drawn")
    write_info(drawn, {"generate": identity(["inter"], drop_denials=True)})
    with pytest.raises(ConfigError, match=r"other settings \(prompt differ\)"):
        check_output_identity(drawn, "generate", identity(["inter"]))
