"""Build the store MEMORY_BACKEND names; its library is imported only if used."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, TypedDict

from piagent.errors import MemoryUnavailable
from piagent.memory.base import MemoryStore
from piagent.memory.local import LocalMemoryStore
from piagent.settings import Settings, SettingsError

if TYPE_CHECKING:
    from piagent.memory.redis_store import RedisMemoryStore


class Limits(TypedDict):
    """What every store is built with."""

    max_turns: int
    trim_to: int
    ttl_seconds: float
    max_conversations: int


def build_memory(settings: Settings) -> MemoryStore | None:
    """The configured store, or None when ENABLE_MEMORY is off.

    SQLite is opened (and migrated) here, so an unusable file stops start-up
    with one line. Redis may come up after piagent: it is asked in the
    background, a warning is logged if it does not answer, and until it does
    requests that need memory answer 503.
    """
    if not settings.enable_memory:
        return None
    limits: Limits = {
        "max_turns": settings.memory_max_turns,
        "ttl_seconds": settings.memory_ttl_seconds,
        "max_conversations": settings.memory_max_conversations,
        "trim_to": settings.memory_trim_to,
    }
    if settings.memory_backend == "sqlite":
        import sqlite3

        from piagent.memory.sqlite_store import SchemaTooNew, SQLiteMemoryStore

        try:
            return SQLiteMemoryStore(settings.memory_sqlite_path, **limits)
        except (sqlite3.Error, SchemaTooNew) as exc:
            raise SettingsError(
                f"MEMORY_SQLITE_PATH={settings.memory_sqlite_path!r}: expected a "
                f"usable SQLite file ({exc})"
            ) from None
    if settings.memory_backend == "redis":
        from piagent.memory.redis_store import RedisMemoryStore

        store = RedisMemoryStore(
            settings.redis_url, timeout=settings.redis_timeout, **limits
        )
        threading.Thread(
            target=_probe_redis, args=(store,), name="redis-probe", daemon=True
        ).start()
        return store
    return LocalMemoryStore(**limits)


def _probe_redis(store: RedisMemoryStore) -> None:
    try:
        store.ping()
    except MemoryUnavailable as exc:
        logging.getLogger("piagent").warning(
            "%s; requests that need memory answer 503 until Redis is up", exc.detail
        )
