"""The reader study end to end in a real browser: `pairaug reader-study serve` in a subprocess,
headless Chromium (Debian's, driven by Playwright) as two readers. Reader A takes the whole study
by keyboard and click; reader B stops halfway, closes the browser and resumes from the link. The
database holds every answer once; the report equals a hand computation of the readers' script;
window/level and zoom change what the canvas shows. The screenshots go to $PAIRAUG_SCREENSHOTS
when set (docs/reader-study.md's pictures come from there), else to the test's folder."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pairaug_ray import schema
from pairaug_ray.config import PhantomCorpusConfig
from pairaug_ray.corpora.phantom import render_patient
from pairaug_ray.images import encode_png
from pairaug_ray.reader_study import db
from pairaug_ray.reader_study.draw import draw_study

pytestmark = pytest.mark.slow
CASES_PER_TASK = 6


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(
            "chromium is not installed: `make test` installs Debian's chromium package (make browser)"
        )
    return path


def _phantom_run(root: Path) -> tuple[str, str]:
    """A small run's outputs from phantom radiographs: 10 real pairs; 12 "synthetic" pairs (other
    phantom patients' studies with a rewritten report), InterAug and IntraAug, kept and pruned."""
    cfg = PhantomCorpusConfig(patients=22, size=256, seed=5)
    rows = [render_patient(cfg, i)[0] for i in range(22)]
    (root / "img").mkdir(parents=True)
    real, syn = [], []
    for i, r in enumerate(rows):
        uri = root / "img" / f"{i}.png"
        uri.write_bytes(encode_png((np.clip(r["pixels"], 0, 1) * 65535).astype(np.uint16)))
        text = f"FINDINGS: {r[schema.FINDINGS]} IMPRESSION: {r[schema.IMPRESSION]}"
        if i < 10:
            real.append(
                {
                    schema.PAIR_ID: f"real-{i}",
                    schema.IMAGE_URI: str(uri),
                    schema.REPORT: text,
                    schema.STATUS: "ok",
                }
            )
        else:
            syn.append(
                {
                    schema.PAIR_ID: f"syn-{i}",
                    schema.PARENT_ID: f"real-{i % 10}",
                    schema.ORIGIN: "inter" if i % 2 else "intra",
                    schema.IMAGE_URI: str(uri),
                    schema.REPORT: text.replace("No ", "New ").replace("no ", "new "),
                    schema.STATUS: "ok",
                    schema.KEPT: i % 3 != 0,
                    schema.SCORE_A: 0.1 + 0.05 * i,
                }
            )
    out = []
    for name, table in (("real", real), ("synthetic", syn)):
        (root / name / "manifest").mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(table), root / name / "manifest" / "part-0.parquet")
        out.append(str(root / name))
    return out[0], out[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    real, synthetic = _phantom_run(tmp_path / "run")
    study_dir = tmp_path / "study"
    doc = draw_study(
        real,
        synthetic,
        str(study_dir),
        cases_per_task=CASES_PER_TASK,
        seed=4,
        image_size=384,
        include_pruned=True,
    )
    engine = db.open_study_db(db.default_url(str(study_dir)))
    tokens = {name: db.add_reader(engine, name) for name in ("reader-a", "reader-b")}
    port = _free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pairaug_ray", "reader-study", "serve", str(study_dir), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/static/reader.css", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        "the server did not start:\n" + (tmp_path / "serve.log").read_text()
                    ) from None
                time.sleep(0.3)
        yield base, tokens, doc, engine, study_dir
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    served_log = (tmp_path / "serve.log").read_text()
    assert not any(t in served_log for t in tokens.values())  # tokens never reach the log


def _plan(doc: dict) -> dict[str, dict[str, str]]:
    """The readers' script, case by case: A calls every image real and every report synthetic,
    rates pairs good but every third poor; B answers the truth on images, "real" on reports, and
    rates pairs poor but every other good."""
    a, b = {}, {}
    for i, c in enumerate(doc["cases"]):
        if c["task"] == "images":
            a[c["case_id"]], b[c["case_id"]] = "real", c["truth"]
        elif c["task"] == "reports":
            a[c["case_id"]], b[c["case_id"]] = "synthetic", "real"
        else:
            a[c["case_id"]] = "poor" if i % 3 == 0 else "good"
            b[c["case_id"]] = "good" if i % 2 == 0 else "poor"
    return {"reader-a": a, "reader-b": b}


KEYS = {"real": "r", "synthetic": "s", "good": "g", "poor": "p", "unsure": "u"}


def _read(page, doc, answers, start: int, stop: int, shots: Path | None, by_click: bool = False) -> None:
    """Answer cases start..stop-1 as `answers` says; screenshot the first case of each task."""
    total = len(doc["cases"])
    for i in range(start, stop):
        case = doc["cases"][i]
        page.wait_for_selector(f"#progress:text-is('case {i + 1} of {total}')")
        page.wait_for_selector("#answers button")
        if case["image"]:
            # A CSS selector, not wait_for_function: the page's CSP forbids the eval that polls it.
            page.wait_for_selector(f"#image[data-shown='{case['case_id']}']")
        if shots is not None and (i == 0 or doc["cases"][i - 1]["task"] != case["task"]):
            page.screenshot(path=str(shots / f"reader-study-{case['task']}.png"))
        answer = answers[case["case_id"]]
        if by_click:
            page.click(f"#answers button[data-answer='{answer}']")
        else:
            page.keyboard.press(KEYS[answer])
        if i + 1 < total:
            page.wait_for_selector(f"#progress:text-is('case {i + 2} of {total}')")


def test_two_readers_take_the_study_in_chromium(served, tmp_path):
    from playwright.sync_api import sync_playwright

    base, tokens, doc, engine, study_dir = served
    shots = Path(os.environ.get("PAIRAUG_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    plan = _plan(doc)
    total = len(doc["cases"])
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        external = []
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        page = context.new_page()
        page.on("request", lambda r: external.append(r.url) if not r.url.startswith(base) else None)
        page.goto(f"{base}/r/{tokens['reader-a']}")
        _read(page, doc, plan["reader-a"], 0, 3, shots)
        # Window/level and zoom on the image (the first case is an image case).
        assert doc["cases"][3]["task"] == "images"
        page.wait_for_selector(f"#image[data-shown='{doc['cases'][3]['case_id']}']")
        before = page.evaluate(
            "Array.from(document.getElementById('image').getContext('2d').getImageData(0,0,384,384).data.filter((_, i) => i % 4 == 0)).reduce((s, v) => s + v, 0)"
        )
        box = page.locator("#image").bounding_box()
        page.mouse.move(box["x"] + 190, box["y"] + 190)
        page.keyboard.down("Shift")
        page.mouse.down()
        page.mouse.move(box["x"] + 110, box["y"] + 150, steps=5)  # narrower window, higher level
        page.mouse.up()
        page.keyboard.up("Shift")
        after = page.evaluate(
            "Array.from(document.getElementById('image').getContext('2d').getImageData(0,0,384,384).data.filter((_, i) => i % 4 == 0)).reduce((s, v) => s + v, 0)"
        )
        assert after != before  # the grey values shown changed
        page.mouse.wheel(0, -300)
        assert "scale(1" in page.evaluate("document.getElementById('image').style.transform")
        assert (
            page.evaluate("document.getElementById('image').style.transform")
            != "translate(0px, 0px) scale(1)"
        )
        page.dblclick("#image")  # reset
        _read(page, doc, plan["reader-a"], 3, total, shots, by_click=True)
        page.wait_for_selector("#finished")
        page.screenshot(path=str(shots / "reader-study-finished.png"))
        assert not external, f"the page reached outside the server: {external}"
        context.close()

        # Reader B: half the study, the browser closed, the link opened again.
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        page = context.new_page()
        page.goto(f"{base}/r/{tokens['reader-b']}")
        _read(page, doc, plan["reader-b"], 0, total // 2, None)
        context.close()
        assert len(db.all_answers(engine)) == total + total // 2
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        page = context.new_page()
        page.goto(f"{base}/r/{tokens['reader-b']}")
        _read(page, doc, plan["reader-b"], total // 2, total, None)
        page.wait_for_selector("#finished")
        # A revoked or unknown link opens nothing.
        db.revoke_reader(engine, "reader-b")
        assert page.goto(f"{base}/r/{tokens['reader-b']}").status == 404
        assert page.goto(f"{base}/r/not-a-reader").status == 404
        context.close()
        browser.close()

    # The database holds every answer once, as the readers gave them.
    answers = db.all_answers(engine)
    assert len(answers) == 2 * total
    got = {(a["reader"], a["case_id"]): a["answer"] for a in answers}
    assert got == {(r, c): v for r, p in plan.items() for c, v in p.items()}
    assert all(a["seconds"] > 0 for a in answers)

    # The report, by the CLI, against a hand computation of the script.
    out = subprocess.run(
        [sys.executable, "-m", "pairaug_ray", "reader-study", "report", str(study_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    (shots / "reader-study-report.txt").write_text(out.stdout)
    report = json.loads((study_dir / "reader_study.json").read_text())
    images = [c for c in doc["cases"] if c["task"] == "images"]
    real_images = sum(c["truth"] == "real" for c in images)
    assert report["tasks"]["images"]["per_reader"]["reader-a"]["accuracy"]["value"] == real_images / len(
        images
    )
    assert report["tasks"]["images"]["per_reader"]["reader-b"]["accuracy"]["value"] == 1.0
    # A is right on the synthetic reports, B on the real ones: half of all answers.
    assert report["tasks"]["reports"]["pooled"]["accuracy"]["value"] == 0.5
    assert report["tasks"]["reports"]["per_reader"]["reader-a"]["sensitivity_synthetic"]["value"] == 1.0
    pairs = [c["case_id"] for c in doc["cases"] if c["task"] == "pairs"]
    a = [plan["reader-a"][c] for c in pairs]
    b = [plan["reader-b"][c] for c in pairs]
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / len(pairs)
    p_e = sum(a.count(k) * b.count(k) for k in ("good", "poor", "unsure")) / len(pairs) ** 2
    assert report["tasks"]["pairs"]["agreement"]["value"] == pytest.approx((p_o - p_e) / (1 - p_e))
    assert report["tasks"]["pairs"]["pooled"]["poor"]["value"] == (a.count("poor") + b.count("poor")) / (
        2 * len(pairs)
    )

    # The report page renders in the browser too.
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        page.goto((study_dir / "report.html").as_uri())
        assert page.locator("h2").count() == 3
        assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        page.screenshot(path=str(shots / "reader-study-report.png"), full_page=True)
        browser.close()
