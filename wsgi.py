"""The WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app`."""

import sys

from piagent import create_app
from piagent.settings import SettingsError

try:
    app = create_app()
except SettingsError as exc:
    print(f"piagent: configuration error: {exc}", file=sys.stderr, flush=True)
    # 4 is gunicorn's "app failed to load": the master stops instead of
    # restarting workers that can never boot.
    raise SystemExit(4) from None
