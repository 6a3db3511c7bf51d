"""Build the store MEMORY_BACKEND names; its library is imported only if used."""

from __future__ import annotations

from piagent.memory.base import MemoryStore
from piagent.memory.local import LocalMemoryStore
from piagent.settings import Settings, SettingsError


def build_memory(settings: Settings) -> MemoryStore | None:
    """The configured store, or None when ENABLE_MEMORY is off.

    SQLite is opened (and migrated) here, so an unusable file stops start-up
    with one line. Redis is not asked: it may come up after piagent, and until
    then requests that need memory answer 503.
    """
    if not settings.enable_memory:
        return None
    limits = {
        "max_turns": settings.memory_max_turns,
        "ttl_seconds": settings.memory_ttl_seconds,
        "max_conversations": settings.memory_max_conversations,
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

        return RedisMemoryStore(
            settings.redis_url, timeout=settings.redis_timeout, **limits
        )
    return LocalMemoryStore(**limits)
