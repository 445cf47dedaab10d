"""The reader study's database: readers, the study's cases, and every answer (SQLAlchemy, with
Alembic migrations in reader_study/migrations).

SQLite in the study's folder by default, PostgreSQL when a URL is given. It holds no patient data:
cases are their random ids and task; the truth, the images and the reports stay in the study's
folder. Readers are known by a name the study's owner gives and a token, of which only a hash is
stored. A reader answers a case once (a unique constraint, so that a replayed or doubled request
cannot write twice); each answer is committed on its own, so an interrupted session loses nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from pairaug_ray.errors import UserError

MIGRATIONS = Path(__file__).with_name("migrations")
ANSWERS = {
    "images": ("real", "synthetic"),
    "reports": ("real", "synthetic"),
    "pairs": ("good", "poor", "unsure"),
}


class Base(DeclarativeBase):
    pass


class Reader(Base):
    __tablename__ = "readers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Case(Base):
    __tablename__ = "cases"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the random case id
    task: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(Integer)  # the order every reader sees


class Answer(Base):
    __tablename__ = "answers"
    __table_args__ = (UniqueConstraint("reader_id", "case_id", name="one_answer_per_case"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id"))
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"))
    answer: Mapped[str] = mapped_column(String(16))
    seconds_on_case: Mapped[float] = mapped_column(Float)
    answered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AlreadyAnswered(UserError):
    """The reader has answered this case."""


def default_url(study_dir: str) -> str:
    return f"sqlite:///{Path(study_dir).resolve() / 'answers.sqlite'}"


def engine_for(url: str) -> Engine:
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        # SQLite leaves foreign keys unchecked unless asked, per connection.
        event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA foreign_keys=ON"))
    return engine


def upgrade(url: str) -> None:
    """Bring the database at `url` to the newest schema (Alembic's upgrade to head)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "head")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def register_cases(engine: Engine, cases: list[dict[str, Any]]) -> None:
    """The study's cases (id, task, order); once: a second call with the same study adds nothing."""
    with Session(engine) as s, s.begin():
        known = set(s.scalars(select(Case.id)))
        for position, c in enumerate(cases):
            if c["case_id"] not in known:
                s.add(Case(id=c["case_id"], task=c["task"], position=position))


def add_reader(engine: Engine, name: str) -> str:
    """A new reader; returns their token (shown once: only its hash is kept)."""
    token = secrets.token_urlsafe(24)
    with Session(engine) as s, s.begin():
        if s.scalar(select(Reader).where(Reader.name == name)) is not None:
            raise UserError(f"a reader named {name!r} exists; revoke them or choose another name")
        s.add(Reader(name=name, token_sha256=token_hash(token), created_at=datetime.now(UTC)))
    return token


def revoke_reader(engine: Engine, name: str) -> None:
    with Session(engine) as s, s.begin():
        reader = s.scalar(select(Reader).where(Reader.name == name))
        if reader is None:
            raise UserError(f"no reader named {name!r}")
        reader.revoked_at = datetime.now(UTC)


def list_readers(engine: Engine) -> list[dict[str, Any]]:
    """Every reader: name, when added and revoked, how many cases answered (no tokens: only hashes exist)."""
    from sqlalchemy import func

    with Session(engine) as s:
        counts = dict(s.execute(select(Answer.reader_id, func.count()).group_by(Answer.reader_id)).all())
        return [
            {
                "name": r.name,
                "created_at": r.created_at.isoformat(),
                "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
                "answered": counts.get(r.id, 0),
            }
            for r in s.scalars(select(Reader).order_by(Reader.id))
        ]


def reader_for_token(engine: Engine, token: str) -> Reader | None:
    """The reader a token belongs to; None for an unknown or revoked token."""
    with Session(engine) as s:
        reader = s.scalar(select(Reader).where(Reader.token_sha256 == token_hash(token)))
        if reader is None or reader.revoked_at is not None:
            return None
        s.expunge(reader)
        return reader


def record_answer(engine: Engine, reader_id: int, case_id: str, answer: str, seconds: float) -> None:
    """One answer, committed at once. Raises UserError for a case not in the study or an answer the
    case's task does not offer, AlreadyAnswered for a second answer to the same case."""
    with Session(engine) as s:
        case = s.get(Case, case_id)
        if case is None:
            raise UserError(f"case {case_id!r} is not in this study")
        if answer not in ANSWERS[case.task]:
            raise UserError(f"{answer!r} is not an answer to a {case.task} case: {list(ANSWERS[case.task])}")
        if not 0 <= seconds < 86400:
            raise UserError(f"seconds on case must be between 0 and a day, got {seconds}")
        s.add(
            Answer(
                reader_id=reader_id,
                case_id=case_id,
                answer=answer,
                seconds_on_case=float(seconds),
                answered_at=datetime.now(UTC),
            )
        )
        try:
            s.commit()
        except IntegrityError:
            s.rollback()
            raise AlreadyAnswered(f"case {case_id!r} is answered already") from None


def answered(engine: Engine, reader_id: int) -> set[str]:
    with Session(engine) as s:
        return set(s.scalars(select(Answer.case_id).where(Answer.reader_id == reader_id)))


def next_case(engine: Engine, reader_id: int) -> tuple[Case | None, int, int]:
    """The reader's next unanswered case in the study's order, how many they answered, and the total."""
    with Session(engine) as s:
        done = set(s.scalars(select(Answer.case_id).where(Answer.reader_id == reader_id)))
        cases = list(s.scalars(select(Case).order_by(Case.position)))
        for c in cases:
            if c.id not in done:
                s.expunge(c)
                return c, len(done), len(cases)
        return None, len(done), len(cases)


def all_answers(engine: Engine) -> list[dict[str, Any]]:
    """Every answer with its reader's name, for the report."""
    with Session(engine) as s:
        rows = s.execute(
            select(
                Reader.name, Answer.case_id, Answer.answer, Answer.seconds_on_case, Answer.answered_at
            ).join(Reader, Reader.id == Answer.reader_id)
        )
        return [
            {
                "reader": r[0],
                "case_id": r[1],
                "answer": r[2],
                "seconds": r[3],
                "answered_at": r[4].isoformat(),
            }
            for r in rows
        ]


def open_study_db(url: str) -> Engine:
    """The study's database at `url`, migrated to the newest schema."""
    upgrade(url)
    return engine_for(url)
