"""The layers hold: the domain imports no Flask, and only the web layer knows
Flask, WSGI or gunicorn (docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.support.server import ROOT

PACKAGE = ROOT / "piagent"
# Modules allowed to know the web: the web layer itself, and the composition
# root that hands the domain's services to it.
WEB = ("piagent/web/", "piagent/app.py")
WEB_LIBRARIES = ("flask", "werkzeug", "flask_limiter", "flask_cors", "gunicorn")
DOMAIN = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for path in PACKAGE.rglob("*.py")
    if not str(path.relative_to(ROOT)).startswith(WEB)
)


def test_the_domain_is_every_module_outside_the_web_layer():
    assert {"piagent", "piagent.chat", "piagent.errors", "piagent.providers.http"} <= (
        set(DOMAIN)
    )
    assert not [name for name in DOMAIN if name.startswith("piagent.web")]


def test_no_domain_module_loads_flask_or_werkzeug():
    """Each domain module imported alone in a fresh interpreter (so imports
    made by other modules cannot hide one): neither Flask nor werkzeug loads."""
    check = (
        "import importlib, sys; importlib.import_module(sys.argv[1]); "
        "print(' '.join(m for m in ('flask', 'werkzeug') if m in sys.modules))"
    )
    runs = {
        name: subprocess.Popen(
            [sys.executable, "-c", check, name],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in DOMAIN
    }
    loaded = {}
    for name, run in runs.items():
        out, err = run.communicate(timeout=60)
        assert run.returncode == 0, err
        if out.strip():
            loaded[name] = out.strip()
    assert loaded == {}


def imported_modules(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", DOMAIN)
def test_only_the_web_layer_imports_web_libraries_or_the_web_layer(module):
    parts = module.split(".")
    path = ROOT.joinpath(*parts).with_suffix(".py")
    if not path.exists():
        path = ROOT.joinpath(*parts, "__init__.py")
    web = [
        name
        for name in imported_modules(path)
        if name.split(".")[0] in WEB_LIBRARIES or name.startswith("piagent.web")
    ]
    assert web == [], f"{module} imports {web}"
