"""The keys file: owners, hashed keys, derived names; one-line refusals that
never repeat a key; the keyring a running server reloads."""

from __future__ import annotations

import hashlib
import logging

import pytest

from piagent.agents import AGENT_NAME
from piagent.keys import (
    Keyring,
    derived_name,
    digest_of,
    load_api_keys,
    parse_keys_file,
)
from piagent.settings import Settings, SettingsError
from tests.support.server import ROOT

ALICE = "alice-phone-0123456789abcdef"
BOB = "bob-tablet-fedcba9876543210"
BARE = "Zq8_bare-Key-without-a-name-0001"
SECRETS = (ALICE, BOB, BARE)


def hashed(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def owners(text: str) -> list[tuple[str, bytes]]:
    return [(line.owner, line.digest) for line in parse_keys_file(text, "keys")]


def test_the_three_line_forms_and_comments():
    text = (
        "# the household\n"
        f"alice {ALICE}\n"
        f"alice\t{hashed(BOB).upper().replace('SHA256:', 'sha256:')}  # laptop\n"
        f"  {BARE}   # the old one\n"
        "\n"
    )
    assert owners(text) == [
        ("alice", digest_of(ALICE)),
        ("alice", digest_of(BOB)),
        (derived_name(digest_of(BARE)), digest_of(BARE)),
    ]


def test_a_derived_name_is_stable_a_name_and_holds_no_key():
    name = derived_name(digest_of(BARE))
    assert name == "key-" + hashlib.sha256(BARE.encode()).hexdigest()[:10]
    assert AGENT_NAME.fullmatch(name)
    assert BARE not in name and BARE.lower()[:6] not in name
    # API_KEYS' keys are named the same way.
    keys = load_api_keys(Settings(api_keys=BARE))
    assert keys.identify(BARE) == name


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        (f"alice {ALICE} {BOB}", "line 2: expected NAME KEY, NAME sha256:HEX or KEY"),
        (f"Alice {ALICE}", "line 2: expected NAME KEY"),
        (f"-alice {ALICE}", "the first of its two words is no name"),
        (f"{'a' * 65} {ALICE}", "the first of its two words is no name"),
        ("alice sha256:" + "0" * 63, "line 2: expected sha256: and 64 hex digits"),
        ("alice sha256:" + "0" * 65, "line 2: expected sha256: and 64 hex digits"),
        ("alice sha256:" + "g" * 64, "line 2: expected sha256: and 64 hex digits"),
        (hashed(ALICE), "line 2: a sha256: hash needs its owner's name"),
        ("alice short", "line 2: the key has 5 characters; expected at least 16"),
        (f"{BOB}é", "line 2: the key has a space, a comma or a character other"),
    ],
)
def test_a_malformed_line_is_one_line_with_file_and_number_and_no_key(line, needle):
    with pytest.raises(SettingsError) as caught:
        parse_keys_file(f"# keys\n{line}\n", "API_KEYS_FILE='/etc/piagent/keys'")
    message = str(caught.value)
    assert message.startswith("API_KEYS_FILE='/etc/piagent/keys': line 2: ")
    assert needle in message and "\n" not in message
    for secret in (*SECRETS, "short", "Alice", "-alice", "a" * 65):
        assert secret not in message


def test_a_key_under_two_names_is_refused_naming_both_lines(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text(f"alice {ALICE}\nbob {BOB}\nmallory {hashed(ALICE)}\n")
    with pytest.raises(SettingsError) as caught:
        load_api_keys(Settings(api_keys_file=str(keys)))
    message = str(caught.value)
    assert (
        "line 3: the same key as" in message and "line 1 under another name" in message
    )
    assert "('mallory' and 'alice')" in message
    assert ALICE not in message and hashed(ALICE)[7:] not in message


def test_a_file_key_also_in_api_keys_under_another_name_is_refused(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text(f"alice {ALICE}\n")
    with pytest.raises(SettingsError) as caught:
        load_api_keys(Settings(api_keys=ALICE, api_keys_file=str(keys)))
    assert "line 1: the same key as API_KEYS: key 1 under another name" in str(
        caught.value
    )


def test_the_same_key_twice_under_one_name_is_one_key(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text(f"alice {ALICE}\nalice {hashed(ALICE)}\nbob {BOB}\n")
    loaded = load_api_keys(Settings(api_keys_file=str(keys)))
    assert len(loaded) == 2 and loaded.counts() == {"alice": 1, "bob": 1}
    assert loaded.describe() == "2 API key(s) of 2 owner(s)"


def test_a_malformed_keys_file_stops_the_real_server_in_one_line(
    launch, fake_ollama, tmp_path
):
    keys = tmp_path / "keys"
    keys.write_text(f"alice {ALICE}\nbob sha256:{'0' * 10}\n")
    server = launch({"OLLAMA_HOST": fake_ollama.url, "API_KEYS_FILE": str(keys)})
    assert server.wait_exit() != 0
    log = server.log()
    lines = [line for line in log.splitlines() if line.startswith("piagent:")]
    assert lines == [
        f"piagent: configuration error: API_KEYS_FILE={str(keys)!r}: line 2: "
        "expected sha256: and 64 hex digits"
    ]
    assert ALICE not in log and "Traceback" not in log


def test_a_reload_swaps_the_keys_whole(tmp_path, caplog):
    keys = tmp_path / "keys"
    keys.write_text(f"alice {ALICE}\n")
    settings = Settings(api_keys_file=str(keys))
    keyring = Keyring(settings, load_api_keys(settings))
    keys.write_text(f"bob {BOB}\n")
    with caplog.at_level(logging.INFO, logger="piagent"):
        assert keyring.reload() is True
    assert keyring.keys.identify(BOB) == "bob"
    assert keyring.keys.identify(ALICE) is None
    assert "API keys reloaded: 1 API key(s) of 1 owner(s)" in caplog.text


def test_a_reload_that_finds_a_bad_file_keeps_the_keys_and_says_why(tmp_path, caplog):
    keys = tmp_path / "keys"
    keys.write_text(f"alice {ALICE}\n")
    keys.chmod(0o600)
    settings = Settings(api_keys_file=str(keys))
    keyring = Keyring(settings, load_api_keys(settings))
    for broken, why in (
        (f"alice {ALICE}\nbob {BOB} {BARE}\n", "line 2: expected NAME KEY"),
        (f"bob {ALICE}\nalice {ALICE}\n", "line 2: the same key as"),
        ("# nothing\n", "expected at least one key"),
        (None, "cannot read the file (No such file or directory)"),
    ):
        if broken is None:
            keys.unlink()
        else:
            keys.write_text(broken)
            keys.chmod(0o600)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="piagent"):
            assert keyring.reload() is False
        assert keyring.keys.identify(ALICE) == "alice"
        [record] = caplog.records
        assert record.levelname == "WARNING"
        assert record.getMessage().startswith(
            "API keys not reloaded, still using the 1 API key(s) of 1 owner(s): "
            f"API_KEYS_FILE={str(keys)!r}: "
        )
        assert why in record.getMessage()
        for secret in SECRETS:
            assert secret not in caplog.text


def test_a_server_started_without_keys_gets_none_by_reloading(tmp_path, caplog):
    keyring = Keyring(Settings(), load_api_keys(Settings()))
    with caplog.at_level(logging.INFO, logger="piagent"):
        assert keyring.reload() is False
    assert not keyring.keys
    assert "piagent started without keys" in caplog.text


def test_the_keys_file_shown_in_the_security_guide_is_a_valid_one():
    guide = (ROOT / "docs" / "security.md").read_text()
    [example] = [
        block
        for block in guide.split("```text\n")[1:]
        if block.startswith("# NAME KEY")
    ]
    lines = parse_keys_file(example.split("```", 1)[0], "docs/security.md")
    assert [line.owner for line in lines][:3] == ["alice", "alice", "bob"]
    assert lines[3].owner.startswith("key-") and len(lines) == 4
