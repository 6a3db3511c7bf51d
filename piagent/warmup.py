"""Optional warm-up: load the default model when a worker starts."""

from __future__ import annotations

import logging
import threading
import time

from piagent.errors import ProviderError
from piagent.providers import Provider

log = logging.getLogger("piagent")


def warm_up(provider: Provider, model: str) -> bool:
    """Ask the model server to load `model`; log the outcome, never raise it."""
    started = time.monotonic()
    log.info("warm-up: loading model %r", model)
    try:
        provider.warm(model)
    except ProviderError as exc:
        log.warning("warm-up of model %r failed: %s", model, exc.detail)
        return False
    log.info("warm-up: model %r loaded in %.1f s", model, time.monotonic() - started)
    return True


def start_warm_up(provider: Provider, model: str) -> threading.Thread:
    """In a thread (a greenlet under gevent): loading can take a minute on a
    Pi, and the worker must serve /health and /ready meanwhile."""
    thread = threading.Thread(
        target=warm_up, args=(provider, model), name="warm-up", daemon=True
    )
    thread.start()
    return thread
