# gunicorn settings for piagent: `gunicorn -c gunicorn.conf.py wsgi:app`.
# Values come from the environment or ./.env (same names as piagent's settings).
import ipaddress
import os
import shutil
import signal
import sys
import tempfile

from decouple import Config, RepositoryEmpty, RepositoryEnv
from gunicorn.workers.base_async import AsyncWorker

_env = Config(RepositoryEnv(".env") if os.path.isfile(".env") else RepositoryEmpty())


def _count(name, default, lowest):
    """An integer setting, or piagent's one-line refusal instead of a traceback."""
    raw = str(_env(name, default=default)).strip()
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < lowest:
        sys.exit(
            f"piagent: configuration error: {name}={raw!r}: "
            f"expected an integer >= {lowest}"
        )
    return value


# --- Server socket ---
# Where to listen. Loopback by default: put nginx in front to reach the LAN.
bind = _env("BIND", default="127.0.0.1:8000")
# Pending connections the kernel queues before accept; 64-4096 (the kernel
# caps it at net.core.somaxconn). A burst beyond it is not refused but its SYNs
# are dropped, and each such client waits 1 s or more to retry: 2048 holds a
# burst as large as worker_connections with room to spare, for a few KB.
backlog = 2048

# --- Worker processes ---
# One worker: with the default in-process memory store a second worker would
# split conversations (and take RAM the model needs). MEMORY_BACKEND=sqlite or
# redis share conversations between workers.
workers = _count("WORKERS", 1, 1)


class ReloadsOnHangup:
    """What piagent adds to gunicorn's gevent worker: SIGHUP to a worker
    (`systemctl reload piagent`, the unit's ExecReload) re-reads the API keys
    file in place.

    Not gunicorn's reload, SIGHUP to the master: that starts new workers and
    stops the old ones, losing the in-process memory store and cutting
    streams longer than GRACEFUL_TIMEOUT. Here the worker stays; the handler
    only spawns a greenlet, as gunicorn's gevent worker does for USR1 (its
    #1645), which calls what the app offers as app.extensions
    ["piagent.reload"] once the event loop runs, between the I/O of open
    streams. Installed with gunicorn's other worker signals, so a SIGHUP while
    the app still loads is not the default exit: it reloads once booted.
    """

    reload_pending = False

    def init_signals(self):
        super().init_signals()
        signal.signal(signal.SIGHUP, self.handle_hup)
        signal.siginterrupt(signal.SIGHUP, False)

    def handle_hup(self, sig, frame):
        import gevent

        gevent.spawn(self.reload_app)

    def reload_app(self):
        app = getattr(self, "wsgi", None)
        if app is None:
            # Still loading (the app's own I/O lets the greenlet run): it may
            # have read the file before the change, so read it once loaded.
            self.reload_pending = True
            return
        reload = getattr(app, "extensions", {}).get("piagent.reload")
        if reload is not None:
            reload()

    def load_wsgi(self):
        super().load_wsgi()
        if self.reload_pending:
            self.reload_pending = False
            self.reload_app()


class GeventWorker(AsyncWorker):
    """gunicorn's gevent worker, with gevent imported in the worker only.

    gunicorn imports the worker class in the master, which only forks and
    watches workers; importing gevent there costs the master RSS for nothing.
    This stand-in becomes the real class (with ReloadsOnHangup) once forked.
    Measured 2026-12-02 (idle, after start, median of 3): master 25.9 MB here
    vs 31.3 MB with worker_class = "gevent"; the worker is 1.2 MB larger, so
    master + worker come to 75.5 vs 79.6 MB, 4.1 MB saved against a 60 MB
    idle target.
    """

    def init_process(self):
        from gunicorn.workers.ggevent import GeventWorker as Real

        self.__class__ = type("GeventWorker", (ReloadsOnHangup, Real), {})
        self.init_process()


# gevent: a stream waiting on the model costs a greenlet, not a thread.
worker_class = GeventWorker
# Open connections per worker, including idle streams waiting on a slow first
# token; hundreds to a few thousand.
worker_connections = _count("WORKER_CONNECTIONS", 1000, 1)
# Heartbeat: a worker silent this long is killed. gevent workers send it from
# their own greenlet, so long streams are fine; only a blocked loop trips it.
timeout = 30
# Seconds in-flight requests (streams too) get to finish on stop or reload.
graceful_timeout = _count("GRACEFUL_TIMEOUT", 30, 0)
# Seconds an idle keep-alive client connection stays open; 2-75.
keepalive = 5
# Workers must boot after gevent patched the standard library; never preload.
preload_app = False
# gunicorn 27's runtime control socket: unused by piagent, and it would write a
# socket into the working directory.
control_socket_disable = True

# --- Security ---
# Longest request line and header sizes, gunicorn's defaults made explicit.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190

# --- Proxy ---
# Peers whose X-Forwarded-Proto gunicorn believes; the same list piagent trusts
# for X-Forwarded-For (its request log and rate limits see the real client).
# A bad value is left to piagent, which stops start-up naming the variable;
# gunicorn's own check would stop it with a less helpful message first.
_trusted = _env("TRUSTED_PROXIES", default="127.0.0.1,::1")
try:
    for _part in filter(None, map(str.strip, _trusted.split(","))):
        ipaddress.ip_network(_part)
    forwarded_allow_ips = _trusted
except ValueError:
    forwarded_allow_ips = "127.0.0.1,::1"

# --- Logging ---
# No gunicorn access log: piagent writes one line per request itself (stdout,
# LOG_FORMAT=json or text), with the client address from a trusted proxy,
# which gunicorn's line would show as the proxy's. Errors go to stderr.
accesslog = None
errorlog = "-"
loglevel = _env("LOG_LEVEL", default="info")


# --- Metrics (METRICS=true) ---
# prometheus_client's multiprocess mode: each worker writes its values to files
# in PROMETHEUS_MULTIPROC_DIR and a scrape reads them all, so WORKERS>1 reports
# one set. The directory must start empty: an operator's (systemd's
# RuntimeDirectory, say) is emptied of old values, else a fresh one is made in
# the temporary directory and removed on exit. prometheus_client is imported
# only when a worker exits, so the master does not carry it otherwise.
_metrics = str(_env("METRICS", default="false")).strip().lower() in (
    "1",
    "true",
    "yes",
    "on",
)
_made_metrics_dir = None


def _fresh_metrics_dir():
    global _made_metrics_dir
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    if path:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.remove(os.path.join(path, name))
    else:
        path = _made_metrics_dir = tempfile.mkdtemp(prefix="piagent-metrics-")
        # Workers are forked after this and inherit it.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def child_exit(server, worker):
    """A worker's live gauges (generations in flight, ...) leave with it."""
    if _metrics:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _made_metrics_dir is not None:
        shutil.rmtree(_made_metrics_dir, ignore_errors=True)


def on_starting(server):
    """Tell piagent where gunicorn really listens; warn about several workers;
    give the workers an empty directory for their metrics."""
    if _metrics:
        server.log.info("metrics: values of the workers in %s", _fresh_metrics_dir())
    # The command line (-b, GUNICORN_CMD_ARGS) may override BIND. Workers inherit
    # the environment, and piagent refuses a non-loopback address without keys.
    os.environ["BIND"] = ",".join(server.cfg.bind)
    # server.cfg.workers, not WORKERS: `-w 2` on the command line counts too.
    count = server.cfg.workers
    in_process = _env("MEMORY_BACKEND", default="memory").strip() == "memory"
    memory_on = str(_env("ENABLE_MEMORY", default="true")).strip().lower()
    shared_state = _env("STATE_BACKEND", default="local").strip() == "redis"
    if count > 1 and in_process and memory_on not in ("false", "0", "no", "off"):
        server.log.warning(
            "WORKERS=%d with the in-process memory store: each worker keeps its own "
            "conversations, so a conversation's turns land in different workers%s. "
            "Use MEMORY_BACKEND=sqlite (shared by the workers of this machine), "
            "or WORKERS=1.",
            count,
            " (STATE_BACKEND=redis shares the limits and slots, not conversations)"
            if shared_state
            else "",
        )
    if count > 1 and not shared_state:
        server.log.warning(
            "WORKERS=%d with STATE_BACKEND=local: rate limits and generation slots "
            "are counted per worker, so MAX_CONCURRENT_GENERATIONS and the "
            "RATE_LIMIT_* allow %d times as much in all. Use STATE_BACKEND=redis "
            "to count them once for every worker.",
            count,
            count,
        )
