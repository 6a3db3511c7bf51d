"""What a model host's health is made of: which failures are the host's, its
state and cooldown, and the rendezvous weight that ranks hosts per key."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from piagent.errors import (
    GenerationTimeout,
    ModelMissing,
    ProviderBusy,
    ProviderError,
    ProviderFailed,
    ProviderTimeout,
    ProviderUnreachable,
    StreamBroken,
    StreamStalled,
)


def error_kind(exc: ProviderError) -> str:
    """A short name for an upstream failure, as metrics label it."""
    if isinstance(exc, StreamStalled):
        return "stalled"
    if isinstance(exc, StreamBroken):
        return "stream_broken"
    if isinstance(exc, GenerationTimeout):
        return "deadline"
    if isinstance(exc, ProviderTimeout):
        return "timeout"
    if isinstance(exc, ProviderUnreachable):
        return "unreachable"
    if isinstance(exc, ModelMissing):
        return "model_missing"
    if isinstance(exc, ProviderBusy):
        return "busy"
    return "failed"


def host_failure(exc: ProviderError) -> bool:
    """Whether a failure before any text says the host is unwell, so another
    host may do better: refused, unreachable, no first byte in time, its own
    queue full (503), a 5xx or an error instead of the first token. A 4xx is
    about the request and would fail anywhere; a failure after the first
    token, or past MAX_GENERATION_SECONDS, is never retried."""
    if isinstance(exc, StreamBroken | GenerationTimeout):
        return False
    if isinstance(exc, ProviderUnreachable | ProviderTimeout | ProviderBusy):
        return True
    if isinstance(exc, ModelMissing):
        return True
    if isinstance(exc, ProviderFailed):
        status = exc.upstream_status
        return status is None or status >= 500
    return False


@runtime_checkable
class ListsModels(Protocol):
    """A provider that can list its server's models in one request (GET
    /api/tags, GET /v1/models): what the probe asks."""

    def models(self) -> set[str]: ...


def weight(host: str, key: str) -> int:
    """The rendezvous weight of `host` for `key`: the same in every worker and
    on every machine (Python's own hash() is salted per process)."""
    digest = hashlib.blake2b(f"{host}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def listed(model: str, names: Iterable[str]) -> bool:
    """Ollama lists a model pulled without a tag as `<name>:latest`."""
    names = set(names)
    return model in names or f"{model}:latest" in names


@dataclass
class HostState:
    """What one worker believes about one host."""

    url: str
    failures: int = 0
    down_until: float = 0.0
    reason: str | None = None
    # The agents' models it has, from the last probe; None until one answered.
    models: frozenset[str] | None = None
    # Models it said it lacks since (a 404 to a request).
    missing: set[str] = field(default_factory=set)

    def up(self, now: float) -> bool:
        return now >= self.down_until

    def serves(self, model: str, now: float) -> bool:
        if now < self.down_until or model in self.missing:
            return False
        return self.models is None or model in self.models
