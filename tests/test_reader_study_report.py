"""The reader study's report and its verdicts back in pruning (reader_study/report.py, verdicts.py,
stages/prune.py): numbers equal a hand computation; pruning removes exactly the pairs readers
rejected; the CLI draws, adds readers and reports; and the answers may live in PostgreSQL."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_reader_study_draw import run  # noqa: F401  (the fixture: a small run's outputs)

from pairaug_ray import schema
from pairaug_ray.cli import main
from pairaug_ray.reader_study import db
from pairaug_ray.reader_study.draw import draw_study
from pairaug_ray.reader_study.report import build_report, decide, write_report
from pairaug_ray.reader_study.verdicts import vetoed_pairs
from pairaug_ray.stages.prune import prune_batch


def _answer_all(engine, doc, reader: str, choose) -> None:
    """`reader` answers every case of the study with choose(case)."""
    token = db.add_reader(engine, reader)
    rid = db.reader_for_token(engine, token).id
    for c in doc["cases"]:
        db.record_answer(engine, rid, c["case_id"], choose(c), 3.0)


@pytest.fixture
def answered(run, tmp_path):  # noqa: F811
    real, synthetic = run
    out = tmp_path / "study"
    doc = draw_study(real, synthetic, str(out), cases_per_task=8, seed=2, image_size=32)
    engine = db.open_study_db(db.default_url(str(out)))
    db.register_cases(engine, doc["cases"])
    pairs = [c for c in doc["cases"] if c["task"] == "pairs"]
    # Reader a: calls every case real (tasks 1-2); rates the first 3 pairs poor, the rest good.
    poor_a = {c["case_id"] for c in pairs[:3]}
    _answer_all(
        engine,
        doc,
        "a",
        lambda c: ("poor" if c["case_id"] in poor_a else "good") if c["task"] == "pairs" else "real",
    )
    # Reader b: right on every case of tasks 1-2; rates pairs 2-4 poor and the last one unsure.
    poor_b = {c["case_id"] for c in pairs[2:5]}

    def b(c):
        if c["task"] != "pairs":
            return c["truth"]
        return "poor" if c["case_id"] in poor_b else ("unsure" if c is pairs[-1] else "good")

    _answer_all(engine, doc, "b", b)
    return out, doc, pairs, poor_a, poor_b


def test_report_numbers_equal_a_hand_computation(answered):
    out, doc, pairs, poor_a, poor_b = answered
    report = write_report(str(out))
    images = report["tasks"]["images"]
    # 8 cases, 4 real: a (always "real") is right on half, b on all.
    assert images["per_reader"]["a"]["accuracy"]["value"] == 0.5
    assert images["per_reader"]["a"]["sensitivity_synthetic"]["value"] == 0.0
    assert images["per_reader"]["b"]["accuracy"]["value"] == 1.0
    assert images["pooled"]["accuracy"]["value"] == 12 / 16
    # Tasks 1-2 together: a right on the 8 real of 16, b on all 16.
    overall = report["overall_real_vs_synthetic"]
    assert overall["per_reader"]["a"]["accuracy"]["value"] == 0.5
    assert overall["pooled"]["accuracy"]["value"] == 24 / 32
    # Wilson's interval for 4 of 8, by its formula.
    z, n, p = 1.959963984540054, 8, 0.5
    centre, half = (
        (p + z * z / (2 * n)) / (1 + z * z / n),
        z / (1 + z * z / n) * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5),
    )
    acc = images["per_reader"]["a"]["accuracy"]
    assert acc["low"] == pytest.approx(centre - half, abs=1e-9) and acc["high"] == pytest.approx(
        centre + half, abs=1e-9
    )
    # Cohen's kappa, images: a says real on all 8, b says real on 4: p_o = 4/8, p_e = (8*4 + 0*4)/64 = 0.5 -> 0.
    assert images["agreement"]["method"] == "cohen" and images["agreement"]["value"] == pytest.approx(0.0)
    # Pairs: a poor on 3, good 5; b poor 3, unsure 1, good 4; pooled good 9/16, poor 6/16.
    t3 = report["tasks"]["pairs"]
    assert t3["pooled"]["good"]["value"] == 9 / 16 and t3["pooled"]["poor"]["value"] == 6 / 16
    assert t3["pooled"]["unsure"]["value"] == 1 / 16
    # Cohen's kappa for pairs by hand: agreement on cases 0..7.
    a = ["poor" if c["case_id"] in poor_a else "good" for c in pairs]
    b = ["poor" if c["case_id"] in poor_b else ("unsure" if i == 7 else "good") for i, c in enumerate(pairs)]
    cats = ("good", "poor", "unsure")
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / 8
    p_e = sum(a.count(k) * b.count(k) for k in cats) / 64
    assert t3["agreement"]["value"] == pytest.approx((p_o - p_e) / (1 - p_e))
    assert t3["agreement"]["low"] <= t3["agreement"]["value"] <= t3["agreement"]["high"]
    # Rejected with quorum any: the union of the two readers' poor pairs.
    assert t3["rejected"] == {"quorum": "any", "pairs": len(poor_a | poor_b), "rated": 8}
    assert report["tasks"]["images"]["paper"]["accuracy"] == 0.61
    saved = json.loads((out / "reader_study.json").read_text())
    assert saved["tasks"]["pairs"]["pooled"]["good"]["value"] == 9 / 16
    page = (out / "report.html").read_text()
    assert "Most convincing synthetic cases" in page and page.count("<img") >= 4
    assert "no pneumothorax" not in json.dumps(saved)  # report text is not in the JSON


def test_quorum_rules():
    assert decide([True, False], "any") and not decide([True, False], "majority")
    assert decide([True, True, False], "majority") and not decide([True, True, False], "all")
    assert not decide([], "all") and not decide([], "any")
    with pytest.raises(ValueError, match="quorum"):
        decide([True], "most")


def test_reader_verdicts_prune_exactly_the_pairs_rated_poor(answered):
    out, doc, pairs, poor_a, poor_b = answered
    ids = {c["case_id"]: c["pair_id"] for c in pairs}
    vetoed = vetoed_pairs(str(out))  # rule poor, quorum any
    assert set(vetoed) == {ids[c] for c in poor_a | poor_b}
    both = next(iter(poor_a & poor_b))
    assert vetoed[ids[both]] == "readers: rated poor by 2 of 2 readers"
    assert set(vetoed_pairs(str(out), quorum="all")) == {ids[c] for c in poor_a & poor_b}
    # poor_or_synthetic adds the synthetic images and reports b called synthetic (all of them).
    wider = vetoed_pairs(str(out), rule="poor_or_synthetic")
    caught = {
        c["pair_id"] for c in doc["cases"] if c["task"] in ("images", "reports") and c["truth"] == "synthetic"
    }
    assert set(wider) == set(vetoed) | caught
    # Into pruning: every pair passes the scores; exactly the vetoed ones go, with the reason.
    rows = [
        {schema.PAIR_ID: p["pair_id"], schema.ORIGIN: "inter", schema.STATUS: "ok", schema.SCORE_A: 0.9}
        for p in pairs
    ] + [{schema.PAIR_ID: "other", schema.ORIGIN: "inter", schema.STATUS: "ok", schema.SCORE_A: 0.9}]
    pruned = prune_batch(
        schema.rows_to_table(rows),
        tau=0.3,
        epsilon=0.003,
        means=dict.fromkeys(schema.INTRA_SCORE_COLUMNS),
        vetoed=vetoed,
    ).to_pylist()
    dropped = {r[schema.PAIR_ID]: r[schema.PRUNE_REASON] for r in pruned if not r[schema.KEPT]}
    assert dropped == vetoed
    assert json.loads(pruned[0][schema.PRUNING])["reader_vetoes"] == len(vetoed)


def test_a_report_of_a_study_nobody_answered_says_so(run, tmp_path):  # noqa: F811
    real, synthetic = run
    doc = draw_study(real, synthetic, str(tmp_path / "s"), cases_per_task=4, seed=0, image_size=32)
    report = build_report(doc, [])
    assert report["readers"] == [] and report["tasks"]["images"]["pooled"]["accuracy"]["value"] is None
    assert report["tasks"]["pairs"]["agreement"]["value"] is None


def test_cli_creates_adds_readers_reports_and_refuses_a_missing_study(run, tmp_path, capsys):  # noqa: F811
    real, synthetic = run
    cfg = tmp_path / "job.yaml"
    cfg.write_text(
        f"corpus: {{kind: manifest, manifest: {real}}}\nrun: {{output_dir: {tmp_path / 'out'}}}\n"
        f"prune: {{output: {synthetic}}}\n"
    )
    study = tmp_path / "out" / "reader-study"
    assert (
        main(
            [
                "reader-study",
                "create",
                "--config",
                str(cfg),
                "--cases-per-task",
                "4",
                "--image-size",
                "32",
                "--reader",
                "ann",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "drew 12 cases (images 4, reports 4, pairs 4)" in printed
    link = next(line for line in printed.splitlines() if line.startswith("reader ann: "))
    assert link.startswith("reader ann: http://127.0.0.1:8800/r/")
    token = link.rsplit("/", 1)[1]
    assert token not in (study / "answers.sqlite").read_bytes().decode("latin-1")  # only its hash is stored
    assert main(["reader-study", "reader", "add", str(study), "ben", "--url", "https://rs.example.org"]) == 0
    assert "https://rs.example.org/r/" in capsys.readouterr().out
    assert main(["reader-study", "reader", "revoke", str(study), "ben"]) == 0
    capsys.readouterr()
    assert main(["reader-study", "reader", "list", str(study)]) == 0
    listed = capsys.readouterr().out
    assert "ann" in listed and "active" in listed and "revoked" in listed
    assert main(["reader-study", "report", str(study)]) == 0
    assert "0 readers, 0 answers" in capsys.readouterr().out and (study / "report.html").is_file()
    import socket

    with socket.create_server(("127.0.0.1", 0)) as held:  # another server on the port
        port = str(held.getsockname()[1])
        assert main(["reader-study", "serve", str(study), "--port", port]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert main(["reader-study", "report", str(tmp_path / "nowhere")]) == 2
    assert "pairaug reader-study create" in capsys.readouterr().err
    assert main(["reader-study", "report", str(study), "--database-url-env", "PAIRAUG_TEST_UNSET_URL"]) == 2
    assert "PAIRAUG_TEST_UNSET_URL" in capsys.readouterr().err


@pytest.fixture
def postgres(tmp_path):
    """A real PostgreSQL server (the pgserver wheel's binaries) on a Unix socket in tmp_path; stops
    at the end. pgserver runs it as a non-root user when the tests run as root."""
    pgserver = pytest.importorskip("pgserver", reason="pgserver (dev dependency) is not installed")
    server = pgserver.get_server(str(tmp_path / "pg"), cleanup_mode="stop")
    try:
        yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        server.cleanup()


@pytest.mark.slow
def test_answers_in_postgresql_through_the_migrations(answered, postgres, monkeypatch, tmp_path):
    out, doc, pairs, poor_a, _ = answered
    engine = db.open_study_db(postgres)
    db.register_cases(engine, doc["cases"])
    token = db.add_reader(engine, "pg-reader")
    rid = db.reader_for_token(engine, token).id
    db.record_answer(engine, rid, pairs[0]["case_id"], "poor", 1.5)
    with pytest.raises(db.AlreadyAnswered):
        db.record_answer(engine, rid, pairs[0]["case_id"], "good", 1.5)
    with pytest.raises(db.UserError, match="not in this study"):
        db.record_answer(engine, rid, "of-another-study", "good", 1.5)
    monkeypatch.setenv("PAIRAUG_TEST_PG_URL", postgres)
    assert main(["reader-study", "report", str(out), "--database-url-env", "PAIRAUG_TEST_PG_URL"]) == 0
    report = json.loads((Path(out) / "reader_study.json").read_text())
    assert report["readers"] == ["pg-reader"] and report["answers"] == 1
    assert vetoed_pairs(str(out), db_url=postgres) == {
        pairs[0]["pair_id"]: "readers: rated poor by 1 of 1 readers"
    }
    assert os.environ["PAIRAUG_TEST_PG_URL"] not in (Path(out) / "reader_study.json").read_text()
