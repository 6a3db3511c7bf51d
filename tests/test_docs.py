"""The docs stay true: every setting documented (the table generated from the
fields), every .env example valid, every link resolving, every curl example
answered by the app as the docs say."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import fields
from pathlib import Path

import pytest
from decouple import Config, RepositoryEnv

from piagent import create_app
from piagent.settings import Settings, variable_fields
from tests.conftest import TEST_TIMEOUT
from tests.support import settings_doc
from tests.support.server import ROOT

SETTINGS = [f.name.upper() for f in variable_fields()]
ALIASES = [alias for f in variable_fields() for alias in f.metadata["aliases"]]
SERVER_SETTINGS = ["BIND", "WORKERS", "WORKER_CONNECTIONS", "GRACEFUL_TIMEOUT"]
PER_AGENT = ["OLLAMA_MODEL_<AGENT>", "OPENAI_MODEL_<AGENT>"]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
CONFIGURATION = ROOT / "docs" / "configuration.md"


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    # The two commands come first.
    first_block = text.split("```", 2)[1]
    assert "make run" in first_block and "make test" in first_block
    for doc in DOCS:
        assert f"(docs/{doc.name})" in text, f"the README's map lacks {doc.name}"


def test_the_settings_table_is_generated_from_the_fields():
    """Regenerate with: python -m tests.support.settings_doc --write"""
    assert settings_doc.in_file(CONFIGURATION.read_text()) == settings_doc.table()


@pytest.mark.parametrize("name", SETTINGS + SERVER_SETTINGS + PER_AGENT + ALIASES)
def test_the_configuration_reference_documents_setting(name):
    assert f"`{name}`" in CONFIGURATION.read_text()


@pytest.mark.parametrize("name", SETTINGS + SERVER_SETTINGS)
def test_env_example_lists_setting(name):
    lines = (ROOT / ".env.example").read_text().splitlines()
    assert any(line.lstrip("# ").startswith(name + "=") for line in lines)


def test_every_setting_has_help():
    assert all(f.metadata.get("help") for f in fields(Settings))


def env_blocks() -> list[tuple[str, str]]:
    """The fenced `ini` blocks of the README and docs/ that stand for a .env."""
    found = []
    for page in PAGES:
        text = page.read_text()
        blocks = [part.split("```", 1)[0] for part in text.split("```ini\n")[1:]]
        found += [(page_id(page), b) for b in blocks if b.startswith("# .env")]
    return found


def settings_from_file(path) -> Settings:
    return Settings.from_env(Config(RepositoryEnv(str(path))))


def test_env_examples_are_found():
    pages = {page for page, _ in env_blocks()}
    assert {"docs/security.md", "docs/configuration.md"} <= pages


@pytest.mark.parametrize(("page", "block"), env_blocks())
def test_env_examples_are_valid_settings(tmp_path, page, block):
    path = tmp_path / "example.env"
    path.write_text(block)
    settings_from_file(path)  # a bad value raises SettingsError, naming it
    names = re.findall(r"^([A-Z_]+)=", block, re.M)
    # decouple ignores names it is not asked for: a typo would pass unseen
    assert set(names) <= set(SETTINGS + SERVER_SETTINGS + ALIASES), names


def test_env_example_parses_to_the_defaults():
    """`cp .env.example .env` is a safe start: it changes nothing."""
    assert settings_from_file(ROOT / ".env.example") == Settings()


def anchors(text: str) -> set[str]:
    """GitHub's anchors of a page's headings."""
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", strip_code(text), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def strip_code(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.S)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_links_between_pages_resolve(page):
    for target in re.findall(r"\]\(([^)\s]+)\)", strip_code(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        assert path.exists(), f"{page_id(page)}: {target}"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path.read_text()), f"{page_id(page)}: {target}"


# piagent's own URLs in the docs: this machine, the Pi through nginx, and a LAN
# name the Pi does not answer to until it is added to ALLOWED_HOSTS.
PIAGENT_URL = r"http://(127\.0\.0\.1:8000|pi\.local|[a-z0-9-]+\.home\.arpa)/"
# What `sudo make install` lets a Pi named pi answer to (tests/test_deploy.py).
INSTALLED_HOSTS = "localhost,*.localhost,127.0.0.1,::1,pi,pi.local,192.168.1.20"


def curl_examples() -> list[tuple[str, str, int | None]]:
    """Every curl command in the `sh` blocks of the README and docs/ that calls
    piagent, with the status the comment right under it documents (`# 400
    {...}`: a refusal shown on purpose), if any."""
    found = []
    for page in PAGES:
        for block in re.findall(r"```sh\n(.*?)```", page.read_text(), re.S):
            lines = block.replace("\\\n", " ").splitlines()
            for line, after in zip(lines, [*lines[1:], ""], strict=True):
                # What a pipe does with the answer is not the request.
                command = line.split(" # ", 1)[0].split(" | ", 1)[0].strip()
                if command.startswith("curl ") and re.search(PIAGENT_URL, command):
                    status = re.match(r"# ([1-5]\d\d) ", after.strip() + " ")
                    documented = int(status[1]) if status else None
                    found.append((page_id(page), command, documented))
    return found


def as_request(command: str) -> tuple[str, str, dict[str, str], bytes | None]:
    """(method, path, headers, body) of a curl command line; the URL's host is
    the Host header unless the command sets its own."""
    words = shlex.split(command)[1:]
    method, headers, body, url = None, {}, None, None
    while words:
        word = words.pop(0)
        if word == "-X":
            method = words.pop(0)
        elif word == "-H":
            name, _, value = words.pop(0).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            body = words.pop(0).encode()
        elif word in ("-o", "-w"):
            words.pop(0)
        elif word.startswith("http"):
            url = word
        else:
            assert word in ("-s", "-N", "-i"), f"unexpected curl option {word}"
    assert url is not None
    host, path = re.match(r"^http://([^/]+)(.*)$", url).groups()
    headers.setdefault("Host", host)
    return method or ("POST" if body else "GET"), path, headers, body


AGENT_FILE = re.compile(
    r"<!-- agent file: ([a-z0-9_-]+\.md) -->\n```markdown\n(.*?)```", re.S
)
# What the example agents name in their http.token_env.
EXAMPLE_ENVIRONMENT = {"HA_TOKEN": "an-example-token"}


def doc_agent_files() -> list[tuple[str, str]]:
    """The agent files the docs show, each marked `<!-- agent file: name.md -->`."""
    return [
        (name, text)
        for page in PAGES
        for name, text in AGENT_FILE.findall(page.read_text())
    ]


def test_the_docs_show_an_agent_with_tools():
    assert any("tools:" in text for _, text in doc_agent_files())


def test_an_agent_file_shown_twice_is_the_same_file():
    shown: dict[str, str] = {}
    for name, text in doc_agent_files():
        assert shown.setdefault(name, text) == text, name


@pytest.fixture(scope="module")
def docs_client(fake_ollama, tmp_path_factory):
    """The app with the docs' example agents (start-up accepts them), the same
    test defaults as the `app` fixture otherwise."""
    directory = tmp_path_factory.mktemp("doc-agents")
    for name, text in doc_agent_files():
        (directory / name).write_text(text)
    settings = Settings(
        ollama_host=fake_ollama.url,
        model_timeout=float(TEST_TIMEOUT),
        rate_limit_chat="",
        rate_limit_default="",
        agents_dir=str(directory),
        allowed_hosts=INSTALLED_HOSTS,
        metrics=True,
    )
    return create_app(settings, environ=EXAMPLE_ENVIRONMENT.get).test_client()


def test_curl_examples_are_found():
    pages = {page for page, _, _ in curl_examples()}
    assert {"README.md", "docs/api.md", "docs/deploy.md"} <= pages
    assert {"docs/security.md", "docs/deploy.md"} <= {
        page for page, _, status in curl_examples() if status == 400
    }


@pytest.mark.parametrize(("page", "command", "documented"), curl_examples())
def test_curl_examples_are_answered_as_documented(
    docs_client, ollama, page, command, documented
):
    """The app of an installed Pi with what the docs show turned on
    (/metrics) knows the route and method, takes the body and headers as sent
    (keys are not configured here, so a documented key is not checked), and
    answers without a server error; a refusal shown on purpose gets the
    status its comment says."""
    method, path, headers, body = as_request(command)
    headers.pop("Authorization", None)
    if body is not None:
        json.loads(body)  # the example's body is JSON
    response = docs_client.open(
        path, method=method, headers=headers, data=body, buffered=True
    )
    detail = response.get_json(silent=True) or {}
    if documented is not None:
        assert response.status_code == documented, (command, detail)
        return
    assert response.status_code not in (400, 405, 415, 422), (command, detail)
    assert response.status_code < 500, (command, detail)
    if response.status_code == 404:
        assert "unknown or has expired" in str(detail), (command, detail)
