"""GET /metrics: Prometheus metrics (METRICS=true), and the hooks that count.

On the same port as the API, behind the API key when keys are on
(Prometheus sends it as a bearer token: `authorization` in its scrape
config) and never rate limited, so a scrape every few seconds cannot use up
a key's budget. Requests are counted when they are answered; a turn's times
and tokens when its response is closed (a stream at its end).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, Flask, Response, g, request

from piagent.settings import Settings
from piagent.web.apidoc import Reply, operation
from piagent.web.context import Services, services
from piagent.web.guards.rate_limits import unlimited

if TYPE_CHECKING:  # imported on use: prometheus_client only with METRICS=true
    from piagent.metrics import Metrics

bp = Blueprint("metrics", __name__)

TEXT = "text/plain"


def enabled(settings: Settings) -> bool:
    return settings.metrics


@bp.get("/metrics")
@unlimited
@operation(
    tag="status",
    replies={
        200: Reply(
            "Prometheus' text format (or OpenMetrics, if the Accept header asks "
            "for it); docs/metrics.md lists the metrics.",
            content={TEXT: {"schema": {"type": "string"}}},
        )
    },
)
def scrape() -> Response:
    """Prometheus metrics of every worker, as one set."""
    from piagent.metrics import metrics

    kept = metrics()
    count_stored(services(), kept)
    body, content_type = kept.render(request.headers.get("Accept"))
    return Response(body, content_type=content_type)


def count_stored(found: Services, kept: Metrics) -> None:
    """Set the stored-conversations gauge from this worker's memory."""
    if found.memory is not None:
        try:
            kept.stored(len(found.memory))
        except Exception:  # noqa: BLE001 - a scrape must answer; the gauge waits
            pass


def install_metrics(app: Flask, found: Services) -> None:
    """Count every answer and every turn; tell the queue and the model hosts
    whom to report to."""
    from piagent.metrics import metrics

    kept = metrics()
    found.chat.observe(kept.queue, kept.host, kept.upstream_error)
    local_memory = found.settings.memory_backend == "memory"

    @app.after_request
    def count(response: Response) -> Response:
        rule = request.url_rule
        endpoint = rule.rule if rule is not None else "unmatched"
        kept.request(endpoint, response.status_code)
        turn = g.get("turn")
        if turn is not None:

            def finished() -> None:
                stats = turn.stats
                kept.turn(turn.agent.model, stats)
                if local_memory and not turn.stateless:
                    # Each worker's own count, so the gauge's max over the
                    # workers holds whichever worker answers the scrape.
                    count_stored(found, kept)
                if stats.upstream_error and stats.first_token_at is not None:
                    kept.upstream_error(stats.upstream_error)

            response.call_on_close(finished)
        return response
