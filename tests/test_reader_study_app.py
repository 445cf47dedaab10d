"""The reader study's web app over HTTP (FastAPI's TestClient): a reader takes a small study, bad
requests are refused with a clear status and write nothing, and nothing served tells real from
synthetic but the pixels. The browser test (tests/test_reader_study_browser.py) drives the page."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from test_reader_study_draw import run  # noqa: F401  (the fixture: a small run's outputs)

from pairaug_ray.reader_study import db
from pairaug_ray.reader_study.app import create_app
from pairaug_ray.reader_study.draw import draw_study


@pytest.fixture
def study(run, tmp_path):  # noqa: F811
    real, synthetic = run
    out = tmp_path / "study"
    draw_study(real, synthetic, str(out), cases_per_task=4, seed=1, image_size=64)
    app = create_app(str(out))
    engine = db.engine_for(db.default_url(str(out)))
    tokens = {name: db.add_reader(engine, name) for name in ("a", "b")}
    return TestClient(app), tokens, json.loads((out / "study.json").read_text()), engine


def test_a_reader_takes_the_study_one_case_at_a_time(study):
    client, tokens, doc, engine = study
    base = f"/r/{tokens['a']}"
    page = client.get(base)
    assert page.status_code == 200 and "case 1 of 12" in page.text
    seen = []
    while True:
        case = client.get(f"{base}/next").json()
        if case["finished"]:
            break
        assert case["position"] == len(seen) + 1 and case["total"] == 12
        assert "truth" not in case and "origin" not in case and "pair_id" not in case
        if case["image"]:
            img = client.get(case["image"])
            assert img.status_code == 200 and img.headers["content-type"] == "image/png"
        answer = case["answers"][0]["value"]
        assert client.post(
            f"{base}/answer", json={"case_id": case["case_id"], "answer": answer, "seconds": 2.5}
        ).json()
        seen.append(case["case_id"])
    assert seen == [c["case_id"] for c in doc["cases"]]  # the study's order
    assert "answered all 12 cases" in client.get(base).text
    assert len(db.all_answers(engine)) == 12
    # Reader b has answered nothing and sees nothing of a's answers.
    assert client.get(f"/r/{tokens['b']}/next").json()["position"] == 1


def test_bad_requests_are_refused_and_write_nothing(study):
    client, tokens, doc, engine = study
    base = f"/r/{tokens['a']}"
    first = doc["cases"][0]
    ok = {"case_id": first["case_id"], "answer": "real", "seconds": 1.0}
    assert client.get("/r/not-a-token").status_code == 404
    assert client.post("/r/not-a-token/answer", json=ok).status_code == 404
    assert client.post(f"{base}/answer", json={**ok, "case_id": "of-another-study"}).status_code == 404
    assert (
        client.post(f"{base}/answer", json={**ok, "answer": "good"}).status_code == 422
    )  # not a task 1 answer
    assert client.post(f"{base}/answer", json={"case_id": first["case_id"]}).status_code == 422
    assert (
        client.post(
            f"{base}/answer", content=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )
    assert client.get(f"{base}/image/of-another-study").status_code == 404
    assert db.all_answers(engine) == []
    assert client.post(f"{base}/answer", json=ok).status_code == 200
    assert client.post(f"{base}/answer", json=ok).status_code == 409  # replayed
    db.revoke_reader(engine, "b")
    assert client.get(f"/r/{tokens['b']}/next").status_code == 404
    assert len(db.all_answers(engine)) == 1


def test_nothing_served_differs_between_real_and_synthetic_but_the_pixels(study):
    client, tokens, doc, _ = study
    base = f"/r/{tokens['a']}"
    served = {}
    for c in doc["cases"]:
        if c["image"]:
            r = client.get(f"{base}/image/{c['case_id']}")
            served[c["case_id"]] = (c["truth"] or "pair", dict(r.headers), r.content)
    forms = {
        truth: {
            (len(body), tuple(sorted(h.items())), body[:33]) for t, h, body in served.values() if t == truth
        }
        for truth in ("real", "synthetic")
    }
    assert forms["real"] and forms["real"] == forms["synthetic"] and len(forms["real"]) == 1
    # And the page itself takes nothing from outside (no CDN), with a same-origin policy.
    page = client.get(base)
    assert "http://" not in page.text and "https://" not in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["cache-control"] == "no-store"
