"""The reader study's web app (FastAPI): one case at a time, for readers with a personal link.

    GET  /r/{token}                 the reading page (or the finish page when every case is answered)
    GET  /r/{token}/next            the next case: id, task, "case k of n", its report (JSON)
    GET  /r/{token}/image/{case}    the case's blinded image (only for a case of this study)
    POST /r/{token}/answer          {"case_id", "answer", "seconds"}: one answer, once
    GET  /static/...                the page's script and style, from the package (no CDN)
    GET  /healthz                   "ok" (Kubernetes' probes; says nothing about the study)

Every request needs a live reader token: an unknown or revoked one gets 404 and nothing else (no
hint of what exists). A reader never sees the truth, another reader's answers or a case of another
study. Responses carry no-store and a same-origin content policy; the server's log names readers
and case ids, never tokens or report text.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import BaseModel, Field

from pairaug_ray.errors import UserError
from pairaug_ray.reader_study import db

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
TASK_QUESTIONS = {
    "images": "Is this chest radiograph real, or synthetic / unsure?",
    "reports": "Is this report real, or synthetic / unsure?",
    "pairs": "How well does the report describe the image?",
}
ANSWER_LABELS = {
    "real": "Real",
    "synthetic": "Synthetic / unsure",
    "good": "Good",
    "poor": "Poor",
    "unsure": "Unsure",
}
ANSWER_KEYS = {"real": "r", "synthetic": "s", "good": "g", "poor": "p", "unsure": "u"}
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


class AnswerIn(BaseModel):
    case_id: str = Field(min_length=1, max_length=64)
    answer: str = Field(min_length=1, max_length=16)
    seconds: float = Field(ge=0, lt=86400)


def create_app(study_dir: str, db_url: str | None = None) -> FastAPI:
    """The app for the study drawn into `study_dir` (study.json, media/), answers in `db_url`
    (default: SQLite in the study's folder)."""
    study = json.loads((Path(study_dir) / "study.json").read_text())
    cases = {c["case_id"]: c for c in study["cases"]}
    engine = db.open_study_db(db_url or db.default_url(study_dir))
    db.register_cases(engine, study["cases"])
    media = Path(study_dir) / "media"
    pages = Environment(
        loader=PackageLoader("pairaug_ray.reader_study", "templates"), autoescape=select_autoescape()
    )

    app = FastAPI(title="pairaug reader study", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    def reader(token: str) -> db.Reader:
        found = db.reader_for_token(engine, token)
        if found is None:
            raise HTTPException(404, "not found")
        return found

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok", media_type="text/plain")

    @app.get("/r/{token}", response_class=HTMLResponse)
    def page(token: str) -> HTMLResponse:
        r = reader(token)
        case, done, total = db.next_case(engine, r.id)
        template = pages.get_template("finished.html" if case is None else "read.html")
        return HTMLResponse(template.render(reader=r.name, done=done, total=total, token=token))

    @app.get("/r/{token}/next")
    def next_case(token: str) -> dict[str, Any]:
        r = reader(token)
        case, done, total = db.next_case(engine, r.id)
        if case is None:
            return {"finished": True, "done": done, "total": total}
        c = cases[case.id]
        return {
            "finished": False,
            "case_id": case.id,
            "task": c["task"],
            "question": TASK_QUESTIONS[c["task"]],
            "answers": [
                {"value": a, "label": ANSWER_LABELS[a], "key": ANSWER_KEYS[a]} for a in db.ANSWERS[c["task"]]
            ],
            "report": c.get("report"),
            "image": f"/r/{token}/image/{case.id}" if c.get("image") else None,
            "position": done + 1,
            "total": total,
        }

    @app.get("/r/{token}/image/{case_id}")
    def image(token: str, case_id: str) -> Response:
        reader(token)
        c = cases.get(case_id)
        if c is None or not c.get("image"):
            raise HTTPException(404, "not found")
        return Response((media / c["image"]).read_bytes(), media_type="image/png")

    @app.post("/r/{token}/answer")
    def answer(token: str, body: AnswerIn) -> JSONResponse:
        r = reader(token)
        try:
            db.record_answer(engine, r.id, body.case_id, body.answer, body.seconds)
        except db.AlreadyAnswered as e:
            return JSONResponse({"error": str(e)}, status_code=409)
        except UserError as e:
            status = 404 if "not in this study" in str(e) else 422
            return JSONResponse({"error": str(e)}, status_code=status)
        log.info("reader %s answered case %s", r.name, body.case_id)
        return JSONResponse({"ok": True})

    return app
