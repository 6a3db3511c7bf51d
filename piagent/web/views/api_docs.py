"""GET /openapi.json and /docs (API_DOCS=true): placeholder."""

from flask import Blueprint

from piagent.settings import Settings

bp = Blueprint("api_docs", __name__)


def enabled(settings: Settings) -> bool:
    return False
