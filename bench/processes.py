"""Starting, watching and stopping the fake Ollama and gunicorn.

Why here and not in the figures: every figure needs "the server's CPU and memory
over this window", and that must mean the same thing everywhere: user+system
CPU time and RSS summed over gunicorn's whole process tree (master + workers),
never including the fake or the load generator, which run in other processes.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from bench.fake_ollama import raise_nofile_limit

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
HOST = "127.0.0.1"

__all__ = [
    "FakeOllamaProcess",
    "GunicornProcess",
    "ProcessTree",
    "RssSampler",
    "free_port",
    "http_get",
    "listen_overflows",
    "make_log_dir",
    "raise_nofile_limit",
]


def free_port() -> int:
    """A port nothing listens on right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """A blocking GET, for health checks and fake stats outside asyncio."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class ProcessTree:
    """CPU and RSS of a process and all its descendants, summed."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self._known: dict[int, psutil.Process] = {pid: self.root}

    def processes(self) -> list[psutil.Process]:
        try:
            children = self.root.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        alive = [self.root]
        for child in children:
            alive.append(self._known.setdefault(child.pid, child))
        return alive

    def cpu_seconds(self) -> float:
        """User + system CPU of the live tree (workers' own, not reaped children)."""
        total = 0.0
        for process in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def pss_bytes(self) -> int:
        """Proportional set size, summed: shared pages split, not double-counted."""
        total = 0
        for process in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += getattr(process.memory_full_info(), "pss", 0)
        return total

    def rss_bytes(self) -> int:
        total = 0
        for process in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += process.memory_info().rss
        return total


def listen_overflows() -> int:
    """Times the kernel dropped a connection because a listen queue was full.

    Why: when a burst of connects overflows gunicorn's ``backlog``, the client
    retransmits its SYN after 1 s, then 3 s, which shows up as first-byte
    outliers that have nothing to do with piagent's code.
    """
    try:
        with open("/proc/net/netstat", encoding="ascii") as netstat:
            lines = netstat.read().splitlines()
    except OSError:
        return 0
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(table.get("ListenOverflows", 0))
    return 0


class RssSampler:
    """Samples a tree's RSS every ``interval`` s in a thread, keeping the peak."""

    def __init__(self, tree: ProcessTree, interval: float = 0.05) -> None:
        self.tree = tree
        self.interval = interval
        self.peak = 0
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self.tree.rss_bytes()
            self.samples.append((time.monotonic(), rss))
            self.peak = max(self.peak, rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        rss = self.tree.rss_bytes()
        self.peak = max(self.peak, rss)


class _Child:
    """A subprocess we started, with its output in a log file."""

    def __init__(self, name: str, log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(
                self.log_path.read_text(errors="replace").splitlines()[-lines:]
            )
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGINT, grace: float = 5.0) -> None:
        """Stop our process (and, if it hangs, its descendants by pid)."""
        process = self.process
        if process is None:
            return
        try:
            self._terminate(process, sig, grace)
        finally:
            if process.stdout is not None:
                process.stdout.close()

    @staticmethod
    def _terminate(process: subprocess.Popen[bytes], sig: int, grace: float) -> None:
        if process.poll() is not None:
            return
        try:
            descendants = psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        process.send_signal(sig)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for child in descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


class FakeOllamaProcess(_Child):
    """``python -m bench.fake_ollama`` on a free port."""

    def __init__(
        self,
        log_dir: Path,
        models: str,
        options: tuple[str, ...] = (),
        name: str = "fake_ollama",
    ) -> None:
        super().__init__(name, log_dir)
        self.models = models
        self.options = options
        self.port = 0

    def start(self) -> None:
        with self.log_path.open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.fake_ollama", "--port", "0"]
                + ["--models", self.models, *self.options],
                cwd=PROJECT_ROOT,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode().strip()
        if not line.startswith("READY "):
            raise RuntimeError(f"fake Ollama did not start: {self.log_tail()}")
        self.port = int(line.split()[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def tree(self) -> ProcessTree:
        return ProcessTree(self.pid)


class GunicornProcess(_Child):
    """piagent under gunicorn, started the way production starts it.

    Another app is a subclass: ``arguments()`` is gunicorn's command line after
    the executable, ``workdir`` the directory gunicorn starts in.
    """

    def __init__(
        self, root: Path, log_dir: Path, env: dict[str, str], name: str = "gunicorn"
    ) -> None:
        super().__init__(name, log_dir)
        self.root = root
        self.workdir = root
        self.env = env
        self.port = 0
        self.started_at = 0.0

    def arguments(self) -> list[str]:
        return ["-c", "gunicorn.conf.py", "wsgi:app"]

    def start(self) -> None:
        self.port = free_port()
        env = dict(os.environ)
        env.update(self.env)
        env["BIND"] = f"{HOST}:{self.port}"
        gunicorn = self.root / ".venv" / "bin" / "gunicorn"
        command = [str(gunicorn) if gunicorn.exists() else "gunicorn"]
        with self.log_path.open("ab") as log:  # the child keeps its own copy
            self.started_at = time.monotonic()
            self.process = subprocess.Popen(
                command + self.arguments(),
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_healthy(self, timeout: float = 15.0) -> float:
        """Seconds from ``start()`` until ``GET /health`` answered 200."""
        deadline = self.started_at + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"gunicorn exited with {code}:\n{self.log_tail()}")
            try:
                status, _ = http_get(self.port, "/health", timeout=1.0)
                if status == 200:
                    return time.monotonic() - self.started_at
            except OSError:
                pass
            time.sleep(0.005)
        raise RuntimeError(
            f"gunicorn not healthy after {timeout} s:\n{self.log_tail()}"
        )

    def tree(self) -> ProcessTree:
        return ProcessTree(self.pid)


def make_log_dir() -> Path:
    """Logs of the fake and gunicorn go to a fresh temporary directory."""
    return Path(tempfile.mkdtemp(prefix="piagent-bench-"))
