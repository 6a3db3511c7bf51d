"""`python -m piagent keys`: add prints a key once and stores its hash, list
counts, revoke rewrites atomically; every refusal is one line, status 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from piagent import keytool
from piagent.keys import derived_name, digest_of, parse_keys_file
from tests.support.server import ROOT, base_env

BARE = "Zq8_bare-Key-without-a-name-0001"
ENV_KEY = "dora-env-key-66554433221100"


def keys_tool(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "piagent", *args],
        cwd=cwd,
        env={**base_env(cwd), "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def refused(result: subprocess.CompletedProcess[str], needle: str) -> str:
    assert result.returncode == 2, result
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert needle in line and "Traceback" not in result.stderr
    return line


@pytest.fixture
def home(tmp_path):
    """A working directory whose .env names the keys file, as `make run` uses."""
    (tmp_path / ".env").write_text(f"API_KEYS_FILE={tmp_path / 'keys'}\n")
    return tmp_path


def test_add_prints_a_new_key_once_and_stores_only_its_hash(home):
    added = keys_tool(home, "keys", "add", "alice")
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", key)
    assert key not in added.stderr
    assert "added a key for alice" in added.stderr
    assert "sudo systemctl reload piagent" in added.stderr
    keys = home / "keys"
    assert keys.read_text() == f"alice sha256:{digest_of(key).hex()}\n"
    assert oct(keys.stat().st_mode & 0o777) == "0o600"
    [line] = parse_keys_file(keys.read_text(), "keys")
    assert (line.owner, line.digest) == ("alice", digest_of(key))
    again = keys_tool(home, "keys", "add", "alice")
    assert again.stdout.strip() != key
    assert "alice has 2 keys now" in again.stderr


def test_add_keeps_an_existing_files_mode_and_ends_its_last_line(home):
    keys = home / "keys"
    keys.write_text(f"# ours\n{BARE}")  # no newline at the end
    keys.chmod(0o640)
    assert keys_tool(home, "keys", "add", "bob").returncode == 0
    assert oct(keys.stat().st_mode & 0o777) == "0o640"
    lines = keys.read_text().splitlines()
    assert lines[:2] == ["# ours", BARE] and lines[2].startswith("bob sha256:")


def test_list_shows_each_owner_and_its_key_count(home):
    keys = home / "keys"
    keys.write_text(f"# keys\n{BARE}\n")
    for name in ("alice", "alice", "bob"):
        keys_tool(home, "keys", "add", name)
    listed = keys_tool(home, "keys", "list", API_KEYS=ENV_KEY)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows == sorted(
        [
            ["alice", "2", "keys"],
            ["bob", "1", "key"],
            [derived_name(digest_of(BARE)), "1", "key"],
            [derived_name(digest_of(ENV_KEY)), "1", "key", "(API_KEYS)"],
        ]
    )
    assert BARE not in listed.stdout


def test_revoke_removes_that_owners_lines_atomically_keeping_mode(home):
    keys = home / "keys"
    keys.write_text(f"# the household\n{BARE}  # the old tablet\n")
    keys.chmod(0o640)
    keys_tool(home, "keys", "add", "alice")
    keys_tool(home, "keys", "add", "bob")
    keys_tool(home, "keys", "add", "alice")
    before = keys.stat().st_ino
    revoked = keys_tool(home, "keys", "revoke", "alice")
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked 2 keys of alice" in revoked.stderr
    lines = keys.read_text().splitlines()
    assert lines[:2] == ["# the household", f"{BARE}  # the old tablet"]
    assert len(lines) == 3 and lines[2].startswith("bob sha256:")
    assert oct(keys.stat().st_mode & 0o777) == "0o640"
    assert keys.stat().st_ino != before  # a new file renamed over the old
    assert sorted(p.name for p in home.iterdir()) == [".env", "keys"]
    # A bare key's owner is revoked by its derived name.
    derived = derived_name(digest_of(BARE))
    assert keys_tool(home, "keys", "revoke", derived).returncode == 0
    assert BARE not in keys.read_text()


def test_the_env_file_option_names_the_settings_file(tmp_path):
    settings = tmp_path / "piagent.env"
    settings.write_text(f"API_KEYS_FILE={tmp_path / 'etc-keys'}\n")
    added = keys_tool(tmp_path, "keys", "--env-file", str(settings), "add", "eve")
    assert added.returncode == 0, added.stderr
    assert (tmp_path / "etc-keys").read_text().startswith("eve sha256:")


def test_refusals_are_one_line_with_status_2(home, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    refused(keys_tool(bare, "keys", "add", "alice"), "API_KEYS_FILE is not set")
    refused(keys_tool(bare, "keys", "list"), "no API keys are set")
    line = refused(keys_tool(home, "keys", "add", BARE), "NAME is not a name")
    assert BARE not in line  # a key typed where the name goes is not echoed
    refused(keys_tool(home, "keys", "add", "Alice"), "expected a-z, 0-9")
    refused(keys_tool(home, "keys", "revoke", "nobody"), "cannot read the file")
    keys_tool(home, "keys", "add", "alice")
    refused(keys_tool(home, "keys", "revoke", "nobody"), "no keys of 'nobody' in")
    refused(keys_tool(home, "keys", "revoke", "alice"), "alice has the last keys")
    env_owner = derived_name(digest_of(ENV_KEY))
    refused(
        keys_tool(home, "keys", "revoke", env_owner, API_KEYS=ENV_KEY),
        f"{env_owner}'s keys are in API_KEYS",
    )
    refused(keys_tool(home, "keys", "--env-file", "nope", "list"), "no such file")
    refused(keys_tool(home, "nonsense"), "usage: python -m piagent keys")
    refused(
        keys_tool(home, "keys", "list", TEMPERATURE="hot"),
        "configuration error: TEMPERATURE='hot'",
    )
    with (home / "keys").open("a") as keys:
        keys.write(f"bob {BARE} {BARE}\n")
    line = refused(keys_tool(home, "keys", "add", "carol"), "line 2: expected NAME")
    assert BARE not in line
    usage = keys_tool(home, "keys", "add")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own a file as another")
def test_revoke_keeps_the_files_owner(home):
    keys = home / "keys"
    keys.write_text(f"{BARE}\n")
    keys_tool(home, "keys", "add", "alice")
    os.chown(keys, 0, 65534)  # root:nogroup, like root:piagent on a Pi
    assert keys_tool(home, "keys", "revoke", "alice").returncode == 0
    assert (keys.stat().st_uid, keys.stat().st_gid) == (0, 65534)


def failing(*_args, **_kwargs):
    raise PermissionError(13, "Permission denied")


def test_a_keys_file_that_cannot_be_written_is_one_line_and_left_as_it_was(
    home, monkeypatch, capsys
):
    keys = home / "keys"
    keys.write_text(f"alice {BARE}\nbob sha256:{'ab' * 32}\n")
    before = keys.read_text()
    monkeypatch.chdir(home)
    monkeypatch.setattr(keytool.os, "open", failing)
    assert keytool.main(["add", "carol"]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # no key is shown that was not stored
    [line] = err.splitlines()
    assert "cannot write" in line and "Permission denied" in line
    monkeypatch.undo()
    monkeypatch.chdir(home)
    monkeypatch.setattr(keytool.os, "replace", failing)
    assert keytool.main(["revoke", "bob"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "cannot rewrite" in line and "owner and mode kept" in line
    assert keys.read_text() == before
    assert sorted(p.name for p in home.iterdir()) == [".env", "keys"]
