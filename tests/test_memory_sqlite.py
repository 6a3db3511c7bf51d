"""SQLite specifics: WAL, the versioned schema, indexed expiry, and a locked file."""

import sqlite3

import pytest

from piagent.errors import MemoryUnavailable
from piagent.memory import Message, StoredCall, build_memory, sqlite_store
from piagent.memory.sqlite_store import SCHEMA_VERSION, SchemaTooNew, SQLiteMemoryStore
from piagent.settings import Settings, SettingsError


def test_file_is_in_wal_mode_with_the_schema_version(tmp_path):
    path = tmp_path / "m.sqlite3"
    SQLiteMemoryStore(str(path), 8, 60, 10)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def test_reopening_keeps_conversations_and_migrates_nothing_twice(tmp_path):
    path = str(tmp_path / "m.sqlite3")
    SQLiteMemoryStore(path, 8, 3600, 10).append_exchange("c", "q", "a")
    again = SQLiteMemoryStore(path, 8, 3600, 10)
    assert [m.content for m in again.history("c")] == ["q", "a"]


def test_file_from_a_newer_piagent_is_refused(tmp_path):
    path = tmp_path / "m.sqlite3"
    sqlite3.connect(path).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNew, match="written by a newer piagent"):
        SQLiteMemoryStore(str(path), 8, 60, 10)
    settings = Settings(memory_backend="sqlite", memory_sqlite_path=str(path))
    with pytest.raises(SettingsError, match=r"^MEMORY_SQLITE_PATH=.*usable SQLite"):
        build_memory(settings)


def test_file_that_is_not_a_database_stops_start_up(tmp_path):
    path = tmp_path / "m.sqlite3"
    path.write_text("not a database, just text " * 100)
    settings = Settings(memory_backend="sqlite", memory_sqlite_path=str(path))
    with pytest.raises(SettingsError, match="file is not a database"):
        build_memory(settings)


def test_requests_use_indexes_not_table_scans(tmp_path):
    store = SQLiteMemoryStore(str(tmp_path / "m.sqlite3"), 8, 3600, 10)
    store.append_exchange("warm", "q", "a")
    statements = []
    store._connection.set_trace_callback(statements.append)
    store.history("c")
    store.append_exchange("c", "q", "a")
    store.history("c")
    db = store._connection
    store._connection.set_trace_callback(None)
    plans = [
        detail
        for sql in statements
        if sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "INSERT"))
        for *_, detail in db.execute("EXPLAIN QUERY PLAN " + sql)
    ]
    assert plans, statements
    assert not [plan for plan in plans if plan.startswith("SCAN")], plans


def test_a_file_locked_too_long_is_unavailable_not_a_hang(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT", 0.2)
    path = str(tmp_path / "m.sqlite3")
    store = SQLiteMemoryStore(path, 8, 60, 10)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(MemoryUnavailable, match="database is locked"):
            store.append_exchange("c", "q", "a")
    finally:
        holder.execute("ROLLBACK")
    store.append_exchange("c", "q", "a")
    assert store.history("c")


def test_a_file_of_schema_1_is_migrated_and_its_messages_kept(tmp_path):
    """Schema 2 (tool calls) adds a column: rows of schema 1 read as before."""
    path = str(tmp_path / "m.sqlite3")
    db = sqlite3.connect(path, isolation_level=None)
    for statement in sqlite_store.MIGRATIONS[0]:
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO conversations VALUES ('c', 1e12, 1e12)")
    db.execute("INSERT INTO messages VALUES ('c', 1, 'user', 'q')")
    db.execute("INSERT INTO messages VALUES ('c', 2, 'assistant', 'a')")
    db.close()
    store = SQLiteMemoryStore(path, 8, 1e13, 10)
    assert store.history("c") == [Message("user", "q"), Message("assistant", "a")]
    call = StoredCall("call_1", "clock", "{}")
    store.append_exchange(
        "c",
        "what time?",
        [
            Message("assistant", "", (call,)),
            Message("tool", '{"time": "12:00"}', (), "call_1", "clock"),
            Message("assistant", "noon"),
        ],
    )
    assert store.history("c")[2:] == [
        Message("user", "what time?"),
        Message("assistant", "", (call,)),
        Message("tool", '{"time": "12:00"}', (), "call_1", "clock"),
        Message("assistant", "noon"),
    ]
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()
    assert version == (SCHEMA_VERSION,) == (2,)
