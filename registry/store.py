"""The registry's tables (SQLAlchemy 2.0) and how to open them: a SQLite file by default, PostgreSQL by URL.

    entries      one per accepted bundle: its fingerprint (z), picture, manifest, signature,
                 the packed bundle itself, and its position in the log (`log_index`)
    log_head     one row: the log's size and frontier (roots of its perfect subtrees), so an
                 append costs O(log n) hashes; locking this row serialises appends
    checkpoints  every signed (size, root) the registry has published, so a client can ask
                 for any of them later
    meta         the registry's origin name and public key
    evidence     signed reports (watermark, radioactivity) attached to an entry by its owner
    inference_checks  challenges the served model passed against the entry's committed model (issue 20)

Everything an add writes goes in one transaction: a crash leaves either the whole
entry with its log leaf and checkpoint, or nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import noseprint.core.paths as paths
from noseprint.core.errors import UsageError
from sqlalchemy import (
    Engine,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
)
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ENV_VAR = "NOSEPRINT_REGISTRY"


class Base(DeclarativeBase):
    pass


class Entry(Base):
    __tablename__ = "entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    log_index: Mapped[int] = mapped_column(Integer, unique=True, nullable=False)
    leaf: Mapped[str] = mapped_column(Text, nullable=False)
    """The canonical JSON whose RFC 6962 leaf hash is in the log."""
    commitment: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    label: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    model_type: Mapped[str] = mapped_column(String(64), nullable=False)
    z: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    """z as little-endian float32 (the proven integers divided by 2**frac_bits)."""
    image_png: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    image_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    manifest_json: Mapped[str] = mapped_column(Text, nullable=False)
    manifest_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    envelope_json: Mapped[str] = mapped_column(Text, nullable=False)
    signer_keyid: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    bundle_archive: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    added_at: Mapped[str] = mapped_column(String(32), nullable=False)


class LogHead(Base):
    __tablename__ = "log_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    frontier: Mapped[str] = mapped_column(Text, nullable=False)
    """JSON list of hex subtree roots, left to right."""


class CheckpointRow(Base):
    __tablename__ = "checkpoints"

    size: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    root: Mapped[str] = mapped_column(String(64), nullable=False)
    signed: Mapped[str] = mapped_column(Text, nullable=False)
    """The checkpoint as JSON (origin, size, root, keyid, signature)."""
    created_at: Mapped[str] = mapped_column(String(32), nullable=False)


class Meta(Base):
    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)


class Evidence(Base):
    """A signed report (watermark detection, radioactivity test) the owner of a registered model attached to it.

    Kept beside the entry, not in the log: the report's own signature by the entry's signer is what binds it."""

    __tablename__ = "evidence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("entries.id"), nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    signed_json: Mapped[str] = mapped_column(Text, nullable=False)
    report_sha256: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    signer_keyid: Mapped[str] = mapped_column(String(64), nullable=False)
    added_at: Mapped[str] = mapped_column(String(32), nullable=False)


class InferenceCheck(Base):
    """A challenge-inference check the entry passed: the served model's answers agreed with the proven inference
    of the committed model on enough of the challenge's positions. Only passed checks are recorded; like
    evidence, it sits beside the entry, not in the log (the challenge's checkpoint and the proofs' digest say
    what was checked, and anyone can check it again)."""

    __tablename__ = "inference_checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("entries.id"), nullable=False, index=True)
    challenge_digest: Mapped[str] = mapped_column(String(64), nullable=False)
    seed_source: Mapped[str] = mapped_column(String(32), nullable=False)
    checkpoint_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The size of the registry checkpoint whose root seeded the challenge (None for an auditor's seed)."""
    agreement: Mapped[float] = mapped_column(Float, nullable=False)
    threshold: Mapped[float] = mapped_column(Float, nullable=False)
    positions: Mapped[int] = mapped_column(Integer, nullable=False)
    proofs_digest: Mapped[str] = mapped_column(String(64), nullable=False)
    checked_at: Mapped[str] = mapped_column(String(32), nullable=False)
    logprob_deviation: Mapped[float | None] = mapped_column(Float, nullable=True)
    """The served log-probabilities against the proven logits (None: the answers carried none: greedy tokens
    alone were checked, which a light fine-tune passes)."""
    answers_source: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    """Where the answers came from, as the answers file states it (a served API, a model folder, or a transcript:
    its maker's word); None in checks recorded before it was kept."""
    __table_args__ = (UniqueConstraint("entry_id", "challenge_digest"),)


class LogLeafIndex(Base):
    """The leaf hash at each log position, kept apart from the entries so proofs read 32 bytes a leaf."""

    __tablename__ = "log_leaves"

    log_index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    leaf_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    entry_id: Mapped[int] = mapped_column(ForeignKey("entries.id"), nullable=False, unique=True)


def default_url() -> str:
    return os.environ.get(ENV_VAR) or f"sqlite:///{paths.home() / 'registry.sqlite3'}"


def _sqlite_pragmas(engine: Engine) -> None:
    """WAL (readers never block the writer), a busy timeout, and BEGIN IMMEDIATE for writes.

    pysqlite's own transaction handling starts a deferred transaction lazily, which
    can deadlock two writers that both read first; we issue BEGIN ourselves.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        writing = connection.get_execution_options().get("noseprint_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


def open_engine(url: str | None = None) -> Engine:
    """Open (and create, when new) the registry database at `url`."""
    url = url or default_url()
    try:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})
            _sqlite_pragmas(engine)
        else:
            engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=40)
        Base.metadata.create_all(engine)
        _add_new_columns(engine)
    except ArgumentError as exc:
        raise UsageError(f"not a database URL: {url!r} ({exc})") from None
    except ModuleNotFoundError as exc:
        raise UsageError(f"no database driver for {url.split(':', 1)[0]!r} ({exc})") from None
    except OperationalError as exc:
        raise UsageError(f"cannot open the registry database {safe_url(url)}: {exc.orig}") from None
    return engine


def _add_new_columns(engine: Engine) -> None:
    """Columns added to a table after a database was created (nullable ones only: old rows read None), so a
    registry made by an earlier version opens instead of failing its first query."""
    from sqlalchemy import inspect

    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            if column.name in {c["name"] for c in inspect(engine).get_columns(table.name)}:
                continue
            if not column.nullable:
                raise RuntimeError(f"{table.name}.{column.name} is missing and has no default for old rows")
            kind = column.type.compile(dialect=engine.dialect)
            try:
                with engine.begin() as connection:
                    connection.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')
            except DBAPIError:  # another process opening the same registry added it first
                if column.name not in {c["name"] for c in inspect(engine).get_columns(table.name)}:
                    raise


def writer(engine: Engine) -> Engine:
    """The same engine, with transactions that take the write lock at once (SQLite) or lock rows (PostgreSQL)."""
    return engine.execution_options(noseprint_write=True)


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"


def tables(engine: Engine) -> list[str]:
    return sorted(inspect(engine).get_table_names())
