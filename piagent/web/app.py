"""The Flask app: views, error handlers, the request log and the guards, in order."""

from __future__ import annotations

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from piagent.hosts import AllowedHosts
from piagent.web.context import EXTENSION, RELOAD, Services
from piagent.web.errors import register_error_handlers
from piagent.web.guards import install_guards
from piagent.web.requestlog import init_request_log
from piagent.web.views import (
    agents,
    api_docs,
    chat,
    conversations,
    health,
    metrics,
    ollama_api,
    ollama_chat,
    openai_chat,
    openai_models,
    page,
    ready,
)

# A view module may define `enabled(settings) -> bool`; it is registered only then.
VIEWS = (
    health,
    ready,
    agents,
    chat,
    conversations,
    openai_chat,
    openai_models,
    ollama_chat,
    ollama_api,
    page,
    api_docs,
    metrics,
)


class JSONProvider(DefaultJSONProvider):
    """Every JSON answer (jsonify, a returned dict, every error): UTF-8 as is,
    not \\u-escaped, and keys in the order the contract lists them."""

    ensure_ascii = False
    sort_keys = False


def build_app(services: Services, hosts: AllowedHosts) -> Flask:
    """The WSGI app around `services`; nothing here talks to a model server."""
    settings = services.settings
    # No app-wide static folder: the views that serve files (page, api_docs)
    # own their routes and headers.
    app = Flask("piagent", static_folder=None)
    app.json = JSONProvider(app)
    # One byte over the limit, so read_json_object can see a chunked body is too
    # large; at the limit exactly, werkzeug would silently truncate it.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1
    app.extensions[EXTENSION] = services
    # What a server reloads in place (gunicorn.conf.py's SIGHUP handler).
    app.extensions[RELOAD] = services.keys.reload
    for view in VIEWS:
        enabled = getattr(view, "enabled", None)
        if enabled is None or enabled(settings):
            app.register_blueprint(view.bp)
    register_error_handlers(app)
    init_request_log(app, settings)
    if settings.metrics:
        metrics.install_metrics(app, services)
    install_guards(
        app,
        settings,
        services.keys,
        hosts,
        generating=[chat.bp, openai_chat.bp, ollama_chat.bp],
    )
    return app
