"""piagent: a small HTTP agent server in front of a local Ollama.

`create_app` (piagent/app.py) is imported on first use, so that importing a
domain module (`piagent.chat`, `piagent.providers`, ...) never loads Flask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.4.0"

if TYPE_CHECKING:
    from piagent.app import create_app

__all__ = ["__version__", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from piagent.app import create_app

        return create_app
    raise AttributeError(f"module 'piagent' has no attribute {name!r}")
