"""What stands before every view, installed in one order by `install_guards`."""

from __future__ import annotations

from collections.abc import Iterable

from flask import Blueprint, Flask

from piagent.hosts import AllowedHosts
from piagent.keys import Keyring
from piagent.settings import Settings
from piagent.web.guards.auth import install_auth
from piagent.web.guards.cors import install_cors
from piagent.web.guards.hosts import install_host_check
from piagent.web.guards.origin import install_origin_check
from piagent.web.guards.proxy import TrustedProxies
from piagent.web.guards.rate_limits import install_rate_limits


def install_guards(
    app: Flask,
    settings: Settings,
    keyring: Keyring,
    hosts: AllowedHosts,
    generating: Iterable[Blueprint],
) -> None:
    """Install the guards; this function alone owns their order.

    1. proxy: TrustedProxies wraps the WSGI app, so everything after it (rate
       limits, the request log) sees the client a trusted proxy names as
       `request.remote_addr`, not the proxy.
    2. hosts: the 400 for a Host not in ALLOWED_HOSTS, the first
       before_request of the guards, so a request for another name (DNS
       rebinding) is refused before anything else looks at it: it is not
       counted, its key is not checked, no view runs (/health and the
       @public views included); only the request log sees it.
    3. origin: the 403 for a POST or DELETE from another site's page, for the
       same reason before everything that costs or counts.
    4. rate limits (Flask-Limiter's before_request), per key owner, before the
       key check, so a request with a wrong key is counted too (against its
       address) and guessing keys is limited.
    5. keys: the 401 check, a before_request registered after the limiter's.
    6. CORS last: its after_request then runs first of all of them (Flask runs
       after_request functions in reverse), so its headers go on every answer,
       400s, 401s and 429s included, and browser code can read them.

    `generating` are the blueprints that talk to the model (/chat, /v1 and
    /ollama chat), which share RATE_LIMIT_CHAT. Install after the request log,
    whose before_request must give even a refused request its id.
    """
    # Flask's documented way to add WSGI middleware, which mypy reads as
    # replacing a method.
    app.wsgi_app = TrustedProxies(app.wsgi_app, settings.trusted_proxies)  # type: ignore[method-assign]  # Flask docs
    install_host_check(app, hosts)
    install_origin_check(app, settings)
    install_rate_limits(app, settings, keyring, generating)
    install_auth(app, keyring)
    install_cors(app, settings)
