"""What stands before every view, installed in one order by `install_guards`."""

from __future__ import annotations

from collections.abc import Iterable

from flask import Blueprint, Flask

from piagent.keys import ApiKeys
from piagent.settings import Settings
from piagent.web.guards.auth import install_auth
from piagent.web.guards.cors import install_cors
from piagent.web.guards.proxy import TrustedProxies
from piagent.web.guards.rate_limits import install_rate_limits


def install_guards(
    app: Flask, settings: Settings, keys: ApiKeys, generating: Iterable[Blueprint]
) -> None:
    """Install the guards; this function alone owns their order.

    1. proxy: TrustedProxies wraps the WSGI app, so everything after it (rate
       limits, the request log) sees the client a trusted proxy names as
       `request.remote_addr`, not the proxy.
    2. rate limits (Flask-Limiter's before_request), before the key check, so a
       request with a wrong key is counted too and guessing keys is limited.
    3. keys: the 401 check, a before_request registered after the limiter's.
    4. CORS last: its after_request then runs first of all of them (Flask runs
       after_request functions in reverse), so its headers go on every answer,
       401s and 429s included, and browser code can read them.

    `generating` are the blueprints that talk to the model (/chat, /v1 chat),
    which share RATE_LIMIT_CHAT. Install after the request log, whose
    before_request must give even a refused request its id.
    """
    # Flask's documented way to add WSGI middleware, which mypy reads as
    # replacing a method.
    app.wsgi_app = TrustedProxies(app.wsgi_app, settings.trusted_proxies)  # type: ignore[method-assign]  # Flask docs
    install_rate_limits(app, settings, keys, generating)
    install_auth(app, keys)
    install_cors(app, settings)
