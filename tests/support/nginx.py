"""Run Debian's nginx with the shipped site file in front of a test server."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.support.server import ROOT, free_port

SITE = ROOT / "deploy" / "nginx" / "piagent.conf"
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(p, os.X_OK)), None
)
SHIPPED_READ_TIMEOUT = re.compile(r"proxy_(read|send)_timeout (\d+)s;")


def site_text(
    nginx_port: int, upstream_port: int, timeout_scale: float | None = None
) -> str:
    """The shipped site with only its ports substituted, and optionally both
    proxy timeouts multiplied by `timeout_scale` (to keep a test short while
    keeping their ratio to OLLAMA_TIMEOUT, which the test scales alike)."""
    text = SITE.read_text()
    substitutions = [
        ("listen 80 default_server;", f"listen {nginx_port} default_server;"),
        ("listen [::]:80 default_server;", f"listen [::]:{nginx_port} default_server;"),
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};"),
    ]
    for old, new in substitutions:
        head, sep, tail = text.partition(old)
        assert sep, f"{old!r} not found in {SITE}"
        text = head + new + tail
    if timeout_scale is not None:
        text = SHIPPED_READ_TIMEOUT.sub(
            lambda m: (
                f"proxy_{m[1]}_timeout {round(int(m[2]) * timeout_scale * 1000)}ms;"
            ),
            text,
        )
    return text


def shipped_read_timeout() -> int:
    """proxy_read_timeout of the shipped site, in seconds."""
    for kind, seconds in SHIPPED_READ_TIMEOUT.findall(SITE.read_text()):
        if kind == "read":
            return int(seconds)
    raise AssertionError("no proxy_read_timeout in the shipped site")


class Nginx:
    """nginx in the foreground (daemon off) with everything under `workdir`."""

    def __init__(self, workdir: Path, site: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        (workdir / "piagent.conf").write_text(site)
        # Running as root, nginx's workers would switch to "nobody", who cannot
        # enter pytest's private temp directories.
        user = "user root;\n" if os.geteuid() == 0 else ""
        temp = "".join(
            f"    {kind}_temp_path {workdir / kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (workdir / "nginx.conf").write_text(
            f"daemon off;\n{user}worker_processes 1;\npid {workdir / 'nginx.pid'};\n"
            f"error_log {workdir / 'error.log'} info;\n"
            "events { worker_connections 64; }\n"
            f"http {{\n    access_log {workdir / 'access.log'};\n{temp}"
            f"    include {workdir / 'piagent.conf'};\n}}\n"
        )
        self.port = int(re.search(r"listen (\d+) default_server", site)[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (workdir / "stderr.log").open("wb")
        self.process = subprocess.Popen(
            [NGINX or "nginx", "-p", str(workdir), "-e", str(workdir / "error.log")]
            + ["-c", str(workdir / "nginx.conf")],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 10.0) -> Nginx:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        parts = [self.workdir / "stderr.log", self.workdir / "error.log"]
        return "".join(p.read_text(errors="replace") for p in parts if p.exists())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def start_nginx(workdir: Path, upstream_port: int, **kwargs: float) -> Nginx:
    return Nginx(workdir, site_text(free_port(), upstream_port, **kwargs)).wait_ready()
