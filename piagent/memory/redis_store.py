"""The Redis store: conversations shared by several piagent machines."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from piagent.errors import MemoryUnavailable
from piagent.memory.base import (
    Conversation,
    Message,
    drop_leading_reply,
    exchange_messages,
)
from piagent.memory.window import sliding

PREFIX = "piagent:memory:"

# The cut rule of piagent.memory.window, in Lua so that it is atomic with the
# exchange. Entries are JSON arrays written by json.dumps, so a user message's
# entry starts with '["user",'.
KEPT_FROM = """
local function kept_from(key, n, keep)
  if keep <= 0 then return n end
  local first = math.max(0, n - keep)
  for i, item in ipairs(redis.call('LRANGE', key, first, -1)) do
    if string.sub(item, 1, 8) == '["user",' then return first + i - 1 end
  end
  return n
end
local function drop_before(key, n, start)
  if start >= n then redis.call('DEL', key)
  elseif start > 0 then redis.call('LTRIM', key, start, -1) end
end
"""

# KEYS: messages list, meta hash, LRU index. ARGV: now, cutoff (now - ttl),
# ttl in ms, max turns, cap, id, key prefix, trim to, then the exchange's
# entries. One script, so the exchange, its cut, its expiry and the eviction
# are one atomic step.
APPEND = (
    KEPT_FROM
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[2])
local size = #ARGV - 8
local max_turns = tonumber(ARGV[4])
local n = redis.call('LLEN', KEYS[1])
local fits = true
if n + size > max_turns then
  local keep = math.min(tonumber(ARGV[8]), max_turns - size)
  if keep < 0 then
    fits = false
    drop_before(KEYS[1], n, n)
  else
    drop_before(KEYS[1], n, kept_from(KEYS[1], n, keep))
  end
end
if fits then redis.call('RPUSH', KEYS[1], unpack(ARGV, 9)) end
redis.call('HSETNX', KEYS[2], 'created', ARGV[1])
redis.call('HSET', KEYS[2], 'updated', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[6])
local excess = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[5])
if excess > 0 then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, excess)) do
    if excess > 0 and id ~= ARGV[6] then
      redis.call('DEL', ARGV[7] .. id .. ':messages', ARGV[7] .. id .. ':meta')
      redis.call('ZREM', KEYS[3], id)
      excess = excess - 1
    end
  end
end
"""
)

# KEYS: messages list. ARGV: messages to keep at most. Not activity.
CUT = (
    KEPT_FROM
    + """
local n = redis.call('LLEN', KEYS[1])
drop_before(KEYS[1], n, kept_from(KEYS[1], n, tonumber(ARGV[1])))
"""
)

# Same KEYS as APPEND; ARGV: now, ttl in ms, id. Reading is activity: it renews
# the TTL. The meta hash says whether the conversation exists: its window may
# be empty.
HISTORY = """
if redis.call('EXISTS', KEYS[2]) == 0 then return {} end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[2], 'updated', ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[3])
return redis.call('LRANGE', KEYS[1], 0, -1)
"""


class RedisMemoryStore:
    """Native TTLs on each conversation's keys, lists cut in Lua, and a sorted
    set by last use as the LRU index.

    The client keeps a connection pool and bounds every wait by `timeout`, so
    Redis being down is a quick 503, never a hang; a connection that broke
    while Redis restarted is retried once on a fresh one, so piagent recovers by
    itself. Lua scripts are reloaded by the client if a restarted Redis lost them.
    The clock gives the LRU scores and the times shown; expiry is Redis's own.
    """

    def __init__(
        self,
        url: str,
        max_turns: int,
        ttl_seconds: float,
        max_conversations: int,
        timeout: float = 1.0,
        clock: Callable[[], float] = time.time,
        prefix: str = PREFIX,
        trim_to: int | None = None,
    ) -> None:
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            decode_responses=True,
        )
        self._max_turns = max_turns
        self._trim_to = sliding(max_turns) if trim_to is None else trim_to
        self._ttl = ttl_seconds
        self._ttl_ms = max(1, round(ttl_seconds * 1000))
        self._max_conversations = max_conversations
        self._clock = clock
        self._prefix = prefix
        self._lru = prefix + "lru"
        self._append = self.client.register_script(APPEND)
        self._history = self.client.register_script(HISTORY)
        self._cut = self.client.register_script(CUT)

    def describe(self) -> str:
        kwargs = self.client.connection_pool.connection_kwargs
        if "path" in kwargs:
            return f"redis at unix:{kwargs['path']} db {kwargs.get('db', 0)}"
        return f"redis at {kwargs['host']}:{kwargs['port']} db {kwargs.get('db', 0)}"

    def ping(self) -> None:
        with self._mapped():
            self.client.ping()

    def history(self, conversation_id: str) -> list[Message]:
        with self._mapped():
            raw = self._history(
                keys=self._keys(conversation_id),
                args=[self._clock(), self._ttl_ms, conversation_id],
            )
        return drop_leading_reply(_decode(raw))

    def conversation(self, conversation_id: str) -> Conversation | None:
        messages_key, meta_key, _ = self._keys(conversation_id)
        with self._mapped():
            pipe = self.client.pipeline(transaction=True)
            pipe.lrange(messages_key, 0, -1)
            pipe.hmget(meta_key, ["created", "updated"])
            raw, (created, updated) = pipe.execute()
        if updated is None:
            return None
        updated_at = float(updated)
        return Conversation(
            conversation_id,
            drop_leading_reply(_decode(raw)),
            float(created or updated),
            updated_at,
            updated_at + self._ttl,
        )

    def append_exchange(
        self, conversation_id: str, user: str, assistant: str | Sequence[Message]
    ) -> None:
        if self._max_turns == 0:
            return
        exchange = [_entry(m) for m in exchange_messages(user, assistant)]
        now = self._clock()
        with self._mapped():
            self._append(
                keys=self._keys(conversation_id),
                args=[
                    now,
                    now - self._ttl,
                    self._ttl_ms,
                    self._max_turns,
                    self._max_conversations,
                    conversation_id,
                    self._prefix,
                    self._trim_to,
                    *(json.dumps(entry, ensure_ascii=False) for entry in exchange),
                ],
            )

    def cut(self, conversation_id: str, keep: int) -> None:
        with self._mapped():
            self._cut(keys=self._keys(conversation_id)[:1], args=[keep])

    def forget(self, conversation_id: str) -> None:
        messages_key, meta_key, lru = self._keys(conversation_id)
        with self._mapped():
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(messages_key, meta_key)
            pipe.zrem(lru, conversation_id)
            pipe.execute()

    def __len__(self) -> int:
        with self._mapped():
            pipe = self.client.pipeline(transaction=True)
            pipe.zremrangebyscore(self._lru, "-inf", self._clock() - self._ttl)
            pipe.zcard(self._lru)
            return int(pipe.execute()[1])

    def _keys(self, conversation_id: str) -> list[str]:
        base = self._prefix + conversation_id
        return [base + ":messages", base + ":meta", self._lru]

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        """Redis failures (down, timeout, out of memory) become one 503."""
        try:
            yield
        except redis.RedisError as exc:
            raise MemoryUnavailable(
                f"conversation memory is unavailable ({self.describe()}: {exc}); "
                "try again shortly"
            ) from exc


def _entry(message: Message) -> list[Any]:
    """A list entry: [role, content], plus Message.extra() when there is any.
    A user message's entry must start with '["user",' (KEPT_FROM finds cuts
    by it): json.dumps writes it so."""
    extra = message.extra()
    return [message.role, message.content] + ([extra] if extra else [])


def _decode(raw: list[Any]) -> list[Message]:
    return [Message.restored(*json.loads(item)) for item in raw]
