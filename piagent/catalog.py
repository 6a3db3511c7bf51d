"""The model server's description of its models, asked for briefly cached.

Ollama's clients poll: Home Assistant asks for /api/tags and /api/ps every
30 s, and more than one client may. Each answer of the model server is kept
for TTL_SECONDS per worker, so piagent asks it at most once per answer and
window whatever the number of clients; a failure is kept as long (as None),
so a model server that is down is not asked on every poll either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from piagent.errors import ProviderError
from piagent.providers import Provider

log = logging.getLogger("piagent")

# How long one answer of the model server is reused, in seconds.
TTL_SECONDS = 10.0


class ModelCatalog:
    """`tags()`, `loaded()` and `show(model)` of the provider, cached;
    None when the model server could not say (down, or no such API)."""

    def __init__(
        self,
        provider: Provider,
        ttl: float = TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._provider = provider
        self._ttl = ttl
        self._clock = clock
        self._answers: dict[tuple[str, str | None], tuple[float, Any]] = {}

    def tags(self) -> dict[str, dict[str, Any]]:
        """The models the server has, by name ({} if it cannot say)."""
        return self._cached("tags", None) or {}

    def loaded(self) -> dict[str, dict[str, Any]]:
        """The models in memory, by name ({} if the server cannot say)."""
        return self._cached("ps", None) or {}

    def show(self, model: str) -> dict[str, Any]:
        """The server's /api/show of `model` ({} if it cannot say)."""
        return self._cached("show", model) or {}

    def _cached(self, what: str, model: str | None) -> Any:
        key = (what, model)
        now = self._clock()
        kept = self._answers.get(key)
        if kept is not None and now - kept[0] < self._ttl:
            return kept[1]
        try:
            answer = self._provider.catalog(what, model)
        except ProviderError as exc:
            log.info("model catalog (%s) unavailable: %s", what, exc.detail)
            answer = None
        if len(self._answers) > 256:  # many models shown: start afresh
            self._answers.clear()
        self._answers[key] = (now, answer)
        return answer
