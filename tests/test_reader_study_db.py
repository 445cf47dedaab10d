"""The reader study's database (pairaug_ray/reader_study/db.py): migrations, tokens, one answer per
case, refusals that write nothing. SQLite here; the same code takes a PostgreSQL URL."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from pairaug_ray.errors import UserError
from pairaug_ray.reader_study import db


@pytest.fixture
def engine(tmp_path):
    url = db.default_url(str(tmp_path))
    engine = db.open_study_db(url)
    db.register_cases(
        engine,
        [
            {"case_id": "c1", "task": "images"},
            {"case_id": "c2", "task": "reports"},
            {"case_id": "c3", "task": "pairs"},
        ],
    )
    return engine


def test_migrations_make_the_schema_and_run_twice(tmp_path, engine):
    tables = set(inspect(engine).get_table_names())
    assert {"readers", "cases", "answers", "alembic_version"} <= tables
    db.upgrade(db.default_url(str(tmp_path)))  # again: nothing to do, nothing lost
    db.register_cases(engine, [{"case_id": "c1", "task": "images"}])
    assert db.next_case(engine, 1)[2] == 3


def test_a_reader_answers_each_case_once_in_order_and_resumes(engine):
    token = db.add_reader(engine, "resident-1")
    reader = db.reader_for_token(engine, token)
    assert reader is not None and reader.name == "resident-1"
    case, done, total = db.next_case(engine, reader.id)
    assert (case.id, done, total) == ("c1", 0, 3)
    db.record_answer(engine, reader.id, "c1", "synthetic", 4.2)
    with pytest.raises(db.AlreadyAnswered):
        db.record_answer(engine, reader.id, "c1", "real", 1.0)  # a replayed request
    # A new session (the browser closed) starts where the reader stopped.
    assert db.next_case(engine, db.reader_for_token(engine, token).id)[:2][1] == 1
    assert db.next_case(engine, reader.id)[0].id == "c2"
    rows = db.all_answers(engine)
    assert [(r["reader"], r["case_id"], r["answer"], r["seconds"]) for r in rows] == [
        ("resident-1", "c1", "synthetic", 4.2)
    ]


def test_bad_answers_are_refused_and_write_nothing(engine):
    reader = db.reader_for_token(engine, db.add_reader(engine, "r"))
    with pytest.raises(UserError, match="not in this study"):
        db.record_answer(engine, reader.id, "other-study-case", "real", 1.0)
    with pytest.raises(UserError, match="not an answer to a pairs case"):
        db.record_answer(engine, reader.id, "c3", "real", 1.0)
    with pytest.raises(UserError, match="seconds on case"):
        db.record_answer(engine, reader.id, "c1", "real", -3)
    assert db.all_answers(engine) == []


def test_tokens_are_stored_hashed_and_can_be_revoked(engine):
    token = db.add_reader(engine, "r2")
    assert db.reader_for_token(engine, "not-a-token") is None
    with engine.connect() as c:
        stored = [row[0] for row in c.exec_driver_sql("SELECT token_sha256 FROM readers")]
    assert token not in stored and db.token_hash(token) in stored
    with pytest.raises(UserError, match="exists"):
        db.add_reader(engine, "r2")
    db.revoke_reader(engine, "r2")
    assert db.reader_for_token(engine, token) is None


def test_the_migrations_and_the_models_agree(engine):
    """What Alembic would autogenerate from the models against the migrated database: nothing, so a
    model change without its migration fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as c:
        assert compare_metadata(MigrationContext.configure(c), db.Base.metadata) == []
