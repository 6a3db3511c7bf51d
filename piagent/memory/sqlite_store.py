"""The SQLite store: one file shared by the workers of one machine, kept on restart."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from piagent.errors import MemoryUnavailable
from piagent.memory.base import (
    Conversation,
    Message,
    drop_leading_reply,
    exchange_messages,
)
from piagent.memory.window import append_start, kept_from, sliding

# Seconds a statement waits for another process's write lock before giving up
# with a 503. Transactions here last well under a millisecond, so this is only
# reached when something is badly wrong; under gevent the wait blocks the
# worker's loop (sqlite3 is C, not patched), so it stays short.
BUSY_TIMEOUT = 2.0

# PRAGMA user_version says which of these have been applied. A later release
# appends a list of statements; it never edits one that has shipped.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            created REAL NOT NULL,
            touched REAL NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX conversations_by_touched ON conversations (touched)",
        """CREATE TABLE messages (
            conversation_id TEXT NOT NULL
                REFERENCES conversations (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            PRIMARY KEY (conversation_id, seq)
        ) WITHOUT ROWID""",
        # The conversation count, kept by triggers so the cap is checked by
        # reading one row instead of counting the table on every request.
        "CREATE TABLE counts (name TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID",
        "INSERT INTO counts VALUES ('conversations', 0)",
        """CREATE TRIGGER conversation_added AFTER INSERT ON conversations
        BEGIN UPDATE counts SET n = n + 1 WHERE name = 'conversations'; END""",
        """CREATE TRIGGER conversation_removed AFTER DELETE ON conversations
        BEGIN UPDATE counts SET n = n - 1 WHERE name = 'conversations'; END""",
    ],
    # 2: tool calls (issue 17). What a message holds beside role and content,
    # as JSON (Message.extra): an assistant's tool calls, a tool result's call
    # id and tool name; NULL for a plain message, so old rows need no rewrite.
    ["ALTER TABLE messages ADD COLUMN extra TEXT"],
]
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    """The file was written by a newer piagent; this one must not touch it."""


class SQLiteMemoryStore:
    """WAL mode, one short IMMEDIATE transaction per operation.

    Every worker process opens its own connection; SQLite's file locks order
    the writers, so an exchange is one transaction and is never interleaved.
    Within a process a lock serialises threads and greenlets on the connection
    (no statement yields to gevent, so it is never held across a switch).
    `synchronous=NORMAL` in WAL mode syncs the disk at checkpoints, not at every
    commit: a killed process loses nothing, a power cut may lose the last
    exchanges, and the SD card is spared an fsync per request.
    """

    def __init__(
        self,
        path: str,
        max_turns: int,
        ttl_seconds: float,
        max_conversations: int,
        clock: Callable[[], float] = time.time,
        trim_to: int | None = None,
    ) -> None:
        self.path = path
        self._max_turns = max_turns
        self._trim_to = sliding(max_turns) if trim_to is None else trim_to
        self._ttl = ttl_seconds
        self._max_conversations = max_conversations
        self._clock = clock
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._pid = 0
        with self._lock:
            self._connect()

    def describe(self) -> str:
        return f"sqlite at {self.path}"

    def history(self, conversation_id: str) -> list[Message]:
        with self._transaction() as db:
            now = self._clock()
            touched = db.execute(
                "UPDATE conversations SET touched = ? WHERE id = ? AND touched > ?",
                (now, conversation_id, now - self._ttl),
            ).rowcount
            if not touched:
                return []
            messages = self._messages(db, conversation_id)
        return drop_leading_reply(messages)

    def conversation(self, conversation_id: str) -> Conversation | None:
        with self._transaction(write=False) as db:
            row = db.execute(
                "SELECT created, touched FROM conversations "
                "WHERE id = ? AND touched > ?",
                (conversation_id, self._clock() - self._ttl),
            ).fetchone()
            if row is None:
                return None
            messages = self._messages(db, conversation_id)
        created, touched = row
        return Conversation(
            conversation_id,
            drop_leading_reply(messages),
            created,
            touched,
            touched + self._ttl,
        )

    def append_exchange(
        self, conversation_id: str, user: str, assistant: str | Sequence[Message]
    ) -> None:
        if self._max_turns == 0:
            return
        with self._transaction() as db:
            now = self._clock()
            # The index on `touched` makes this a range read of expired rows
            # only: nothing is scanned when nothing has expired.
            db.execute(
                "DELETE FROM conversations WHERE touched <= ?", (now - self._ttl,)
            )
            db.execute(
                "INSERT INTO conversations (id, created, touched) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET touched = excluded.touched",
                (conversation_id, now, now),
            )
            (count,) = db.execute(
                "SELECT n FROM counts WHERE name = 'conversations'"
            ).fetchone()
            if count > self._max_conversations:
                db.execute(
                    "DELETE FROM conversations WHERE id IN (SELECT id FROM "
                    "conversations WHERE id != ? ORDER BY touched LIMIT ?)",
                    (conversation_id, count - self._max_conversations),
                )
            exchange = exchange_messages(user, assistant)
            seqs, roles = self._window(db, conversation_id)
            start = append_start(roles, len(exchange), self._max_turns, self._trim_to)
            if start is None:
                self._drop_before(db, conversation_id, seqs, len(seqs))
                return
            self._drop_before(db, conversation_id, seqs, start)
            last = seqs[-1] if seqs else 0
            db.executemany(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?)",
                [
                    (conversation_id, last + offset, m.role, m.content, m.extra_json())
                    for offset, m in enumerate(exchange, 1)
                ],
            )

    def cut(self, conversation_id: str, keep: int) -> None:
        with self._transaction() as db:
            seqs, roles = self._window(db, conversation_id)
            self._drop_before(db, conversation_id, seqs, kept_from(roles, keep))

    def forget(self, conversation_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def __len__(self) -> int:
        with self._transaction(write=False) as db:
            (count,) = db.execute(
                "SELECT count(*) FROM conversations WHERE touched > ?",
                (self._clock() - self._ttl,),
            ).fetchone()
        return int(count)

    @staticmethod
    def _window(
        db: sqlite3.Connection, conversation_id: str
    ) -> tuple[list[int], list[str]]:
        """Sequence numbers and roles of the stored window, oldest first."""
        rows = db.execute(
            "SELECT seq, role FROM messages WHERE conversation_id = ? ORDER BY seq",
            (conversation_id,),
        ).fetchall()
        return [seq for seq, _ in rows], [role for _, role in rows]

    @staticmethod
    def _drop_before(
        db: sqlite3.Connection, conversation_id: str, seqs: list[int], start: int
    ) -> None:
        """Delete the window's messages before index `start` (all at len(seqs))."""
        if start == 0 or not seqs:
            return
        bound = seqs[start] if start < len(seqs) else seqs[-1] + 1
        db.execute(
            "DELETE FROM messages WHERE conversation_id = ? AND seq < ?",
            (conversation_id, bound),
        )

    @staticmethod
    def _messages(db: sqlite3.Connection, conversation_id: str) -> list[Message]:
        rows = db.execute(
            "SELECT role, content, extra FROM messages WHERE conversation_id = ? "
            "ORDER BY seq",
            (conversation_id,),
        )
        return [Message.restored(role, content, extra) for role, content, extra in rows]

    @contextmanager
    def _transaction(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction; SQLite's failures (locked, disk full, I/O) become 503s.

        Writers take the write lock up front (IMMEDIATE), so two processes never
        both read and then fail to upgrade, which SQLite cannot wait out.
        """
        with self._lock:
            try:
                db = self._connect()
                db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield db
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise MemoryUnavailable(
                    f"conversation memory is unavailable (SQLite {self.path}: {exc}); "
                    "try again shortly"
                ) from exc

    def _connect(self) -> sqlite3.Connection:
        """This process's connection, opened (and the schema migrated) on first use."""
        if self._connection is not None and self._pid == os.getpid():
            return self._connection
        db = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            _migrate(db, self.path)
        except BaseException:
            db.close()
            raise
        self._connection, self._pid = db, os.getpid()
        return db


def _migrate(db: sqlite3.Connection, path: str) -> None:
    """Bring the schema to SCHEMA_VERSION in one transaction, once per file."""
    db.execute("BEGIN IMMEDIATE")
    try:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"{path} has memory schema {version}; this piagent knows up to "
                f"{SCHEMA_VERSION} (written by a newer piagent?)"
            )
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
