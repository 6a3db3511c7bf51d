"""Start the real `gunicorn -c gunicorn.conf.py wsgi:app` on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
MODEL = "qwen2.5:3b-instruct"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(workdir: Path) -> dict[str, str]:
    """A clean environment: only what a service manager would set, plus PYTHONPATH.

    The server runs in its own working directory so a developer's .env in the
    checkout cannot leak into tests.
    """
    keep = ("PATH", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env.update(HOME=str(workdir), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return env


def _env_file_port(workdir: Path) -> int:
    for line in (workdir / ".env").read_text().splitlines():
        if line.startswith("BIND="):
            return int(line.rsplit(":", 1)[1])
    raise ValueError("no BIND in .env")


class Server:
    """A gunicorn process and its log, stopped with SIGTERM like systemd would."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str],
        bind: bool = True,
        command: list[str] | None = None,
    ) -> None:
        """With bind=False the address comes from a .env in workdir instead;
        `command` replaces the usual gunicorn command line (the unit's, say)."""
        self.workdir = workdir
        self.port = free_port() if bind else _env_file_port(workdir)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "server.log"
        full_env = base_env(workdir)
        if bind:
            full_env["BIND"] = f"127.0.0.1:{self.port}"
        full_env.update(env)
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command
            or [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py")]
            + ["wsgi:app"],
            cwd=workdir,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 20.0) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log()}")
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except (requests.ConnectionError, requests.Timeout):
                # A worker still importing on a busy machine may accept and
                # answer late: keep polling until the deadline.
                time.sleep(0.05)
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.log()}")

    def wait_exit(self, timeout: float = 20.0) -> int:
        return self.process.wait(timeout)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, needle: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            if needle in text:
                return text
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not logged:\n{self.log()}")

    def terminate(self) -> None:
        """Ask gunicorn to stop (SIGTERM) without waiting: stopping takes a
        second or more (up to keepalive longer with a client's idle
        connection), so many servers are asked together, then waited for."""
        if self.process.poll() is None:
            self.process.terminate()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def stop_all(servers: Iterable[Server]) -> None:
    """Stop servers concurrently: each gets its SIGTERM before any is waited for."""
    servers = list(servers)
    for server in servers:
        server.terminate()
    for server in servers:
        server.stop()
