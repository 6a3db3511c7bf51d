"""Conversations belong to their key's owner, in every memory backend, through
the real server: another owner's conversation is indistinguishable from a
missing one; the keys of one owner share theirs; without keys, one owner."""

from __future__ import annotations

import hashlib
import sqlite3
import uuid

import pytest
import requests

from piagent.chat import memory_key
from piagent.keys import derived_name, digest_of
from piagent.web.context import services
from piagent.web.guards.auth import public, request_owner
from tests.support.fake_ollama import DEFAULT_TOKENS
from tests.support.logs import request_line

REPLY = "".join(DEFAULT_TOKENS)
ALICE = "alice-phone-0123456789abcdef"
ALICE_LAPTOP = "alice-laptop-0123456789abcdef"  # in the file as its hash only
BOB = "bob-tablet-fedcba9876543210"
CARL = "carl-bare-key-00112233445566"  # a bare key: its owner is derived
DORA = "dora-env-key-66554433221100"  # from API_KEYS: derived too
CARL_OWNER = derived_name(digest_of(CARL))
DORA_OWNER = derived_name(digest_of(DORA))
KEYS_FILE = f"""# the household
alice {ALICE}
alice sha256:{hashlib.sha256(ALICE_LAPTOP.encode()).hexdigest()}   # her laptop
bob {BOB}
{CARL}
"""


@pytest.fixture
def household(start_server, memory_env, tmp_path_factory, ollama):
    keys = tmp_path_factory.mktemp("keys") / "keys"
    keys.write_text(KEYS_FILE)
    keys.chmod(0o600)
    return start_server(
        API_KEYS_FILE=str(keys), API_KEYS=DORA, LOG_FORMAT="json", **memory_env
    )


def as_(key):
    return {"X-API-Key": key}


def chat(server, key, message, cid, stream=False, rid=None):
    headers = as_(key) | ({"X-Request-Id": rid} if rid else {})
    response = requests.post(
        server.url + "/chat",
        json={"message": message, "conversation_id": cid, "stream": stream},
        headers=headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Conversation-Id"] == cid
    return response


def read(server, key, cid):
    return requests.get(
        server.url + f"/conversations/{cid}", headers=as_(key), timeout=5
    )


def forget(server, key, cid):
    return requests.delete(
        server.url + f"/conversations/{cid}", headers=as_(key), timeout=5
    )


def sent_to_model(ollama):
    return [m["content"] for m in ollama.requests[-1]["messages"][1:]]


def test_another_owners_conversation_is_a_missing_one(household, ollama):
    cid = f"kitchen-{uuid.uuid4().hex[:8]}"
    chat(household, ALICE, "my secret is 42", cid)
    # GET: the same 404 as an id nobody used.
    peek = read(household, BOB, cid)
    never = read(household, BOB, f"never-{uuid.uuid4().hex[:8]}")
    assert (peek.status_code, never.status_code) == (404, 404)
    assert peek.json()["detail"] == f"conversation {cid!r} is unknown or has expired"
    # DELETE: 204, and alice's conversation is untouched.
    assert forget(household, BOB, cid).status_code == 204
    mine = read(household, ALICE, cid)
    assert mine.status_code == 200 and mine.json()["conversation_id"] == cid
    assert [m["content"] for m in mine.json()["messages"]] == ["my secret is 42", REPLY]
    # /chat, JSON and stream: a fresh conversation of bob's own, same id.
    assert chat(household, BOB, "what is the secret?", cid).json()[
        "conversation_id"
    ] == (cid)
    assert sent_to_model(ollama) == ["what is the secret?"]
    chat(household, BOB, "and now?", cid, stream=True)
    assert sent_to_model(ollama) == ["what is the secret?", REPLY, "and now?"]
    assert [m["content"] for m in read(household, BOB, cid).json()["messages"]] == [
        "what is the secret?",
        REPLY,
        "and now?",
        REPLY,
    ]
    assert [m["content"] for m in read(household, ALICE, cid).json()["messages"]] == [
        "my secret is 42",
        REPLY,
    ]
    # Alice's own DELETE forgets hers, and bob's stays.
    assert forget(household, ALICE, cid).status_code == 204
    assert read(household, ALICE, cid).status_code == 404
    assert read(household, BOB, cid).status_code == 200


def test_one_owner_with_two_keys_sees_one_set(household, ollama):
    cid = f"car-{uuid.uuid4().hex[:8]}"
    chat(household, ALICE, "park on level 3", cid)
    # The laptop's key is only in the file as its hash, under the same name.
    found = read(household, ALICE_LAPTOP, cid)
    assert found.status_code == 200 and len(found.json()["messages"]) == 2
    chat(household, ALICE_LAPTOP, "which level?", cid, stream=True)
    assert sent_to_model(ollama) == ["park on level 3", REPLY, "which level?"]


def test_bare_and_api_keys_keys_are_owners_of_their_own(household, ollama):
    cid = f"garage-{uuid.uuid4().hex[:8]}"
    chat(household, CARL, "carl was here", cid)
    assert read(household, DORA, cid).status_code == 404
    assert read(household, CARL, cid).status_code == 200
    chat(household, DORA, "dora too", cid)
    assert sent_to_model(ollama) == ["dora too"]


def test_log_lines_name_the_owner_and_hold_no_key_material(household, ollama):
    cid = f"log-{uuid.uuid4().hex[:8]}"
    rids = {name: uuid.uuid4().hex for name in ("alice", "laptop", "carl", "dora")}
    chat(household, ALICE, "hi", cid, rid=rids["alice"])
    chat(household, ALICE_LAPTOP, "hi", cid, stream=True, rid=rids["laptop"])
    chat(household, CARL, "hi", cid, rid=rids["carl"])
    chat(household, DORA, "hi", cid, rid=rids["dora"])
    refused_rid = uuid.uuid4().hex
    refused = requests.get(
        household.url + "/agents",
        headers={"X-API-Key": BOB + "x", "X-Request-Id": refused_rid},
        timeout=5,
    )
    assert refused.status_code == 401
    owners = {name: request_line(household, rid)["key"] for name, rid in rids.items()}
    assert owners == {
        "alice": "alice",
        "laptop": "alice",
        "carl": CARL_OWNER,
        "dora": DORA_OWNER,
    }
    assert request_line(household, refused_rid)["key"] is None
    log = household.log()
    for key in (ALICE, ALICE_LAPTOP, BOB, CARL, DORA):
        assert key not in log and key[:12] not in log
        assert digest_of(key).hex() not in log


def test_text_log_lines_carry_key_equals_the_owner(start_server, ollama, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text(f"bob {BOB}\n")
    server = start_server(API_KEYS_FILE=str(keys), LOG_FORMAT="text")
    rid = uuid.uuid4().hex
    chat(server, BOB, "hi", "text-log", rid=rid)
    [line] = [
        line for line in server.wait_for_log(rid).splitlines() if f"rid={rid}" in line
    ]
    assert f"rid={rid} key=bob " in line


def test_without_keys_the_store_sees_bare_ids_and_with_keys_owner_slash_id(
    launch, fake_ollama, tmp_path
):
    """An upgrade without keys keeps reading what it stored; turned on, keys
    put each owner's conversations under `<owner>/<id>`, so conversations
    stored before are out of every key's reach until they expire."""
    path = tmp_path / "memory.sqlite3"
    keys = tmp_path / "keys"
    keys.write_text(f"alice {ALICE}\n")
    sqlite = {
        "OLLAMA_HOST": fake_ollama.url,
        "MEMORY_BACKEND": "sqlite",
        "MEMORY_SQLITE_PATH": str(path),
    }
    keyless = launch(sqlite).wait_ready()
    requests.post(
        keyless.url + "/chat",
        json={"message": "before keys", "conversation_id": "legacy"},
        timeout=10,
    ).raise_for_status()
    keyless.stop()
    keyed = launch({**sqlite, "API_KEYS_FILE": str(keys)}).wait_ready()
    assert read(keyed, ALICE, "legacy").status_code == 404
    chat(keyed, ALICE, "with keys", "legacy")
    keyed.stop()
    with sqlite3.connect(path) as db:
        ids = {row[0] for row in db.execute("SELECT id FROM conversations")}
    assert ids == {"legacy", "alice/legacy"}
    again = launch(sqlite).wait_ready()
    found = requests.get(again.url + "/conversations/legacy", timeout=5)
    assert [m["content"] for m in found.json()["messages"]] == ["before keys", REPLY]


def test_memory_keys_are_owner_slash_id_and_bare_without_an_owner():
    assert memory_key("alice", "kitchen") == "alice/kitchen"
    assert memory_key(None, "kitchen") == "kitchen"


def test_a_view_reached_without_the_key_check_still_hands_out_no_owner(make_app):
    """Belt and braces: should a view that reads conversations ever be
    reached without the 401 check (a @public mark by mistake), it refuses
    rather than fall back to the keyless conversations."""
    app = make_app(fresh=True, api_keys=ALICE)

    @public
    def leaky() -> dict[str, str | None]:
        return {"owner": request_owner(services().keys)}

    app.add_url_rule("/leaky", view_func=leaky)
    client = app.test_client()
    refused = client.get("/leaky", headers={"X-API-Key": BOB})
    assert refused.status_code == 401 and set(refused.get_json()) == {"detail"}
    served = client.get("/leaky", headers={"X-API-Key": ALICE})
    assert served.get_json() == {"owner": derived_name(digest_of(ALICE))}
