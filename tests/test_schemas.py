"""The /chat request schema: types, bounds, unknown fields, error locations."""

import pytest

from piagent.errors import InvalidFields
from piagent.web.schemas import ChatRequestSchema, load_or_422

SCHEMA = ChatRequestSchema(max_message_chars=4000)


def errors(payload) -> dict[str, str]:
    with pytest.raises(InvalidFields) as caught:
        load_or_422(SCHEMA, payload)
    return {item["loc"][-1]: item["msg"] for item in caught.value.detail}


def test_defaults_and_unknown_fields_ignored():
    loaded = load_or_422(SCHEMA, {"message": "hi", "colour": "red"})
    assert loaded == {
        "message": "hi",
        "agent": "general",
        "stream": False,
        "conversation_id": None,
    }


@pytest.mark.parametrize("message", ["", "   ", "\n\t"])
def test_empty_or_blank_message_is_invalid(message):
    assert "message" in errors({"message": message})


def test_message_over_the_limit_is_invalid_and_at_the_limit_is_fine():
    assert "longer than 4000" in errors({"message": "x" * 4001})["message"]
    assert load_or_422(SCHEMA, {"message": "x" * 4000})["message"] == "x" * 4000


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "message"),
        ({"message": None}, "message"),
        ({"message": 5}, "message"),
        ({"message": ["hi"]}, "message"),
        ({"message": "hi", "stream": "yes"}, "stream"),
        ({"message": "hi", "stream": 1}, "stream"),
        ({"message": "hi", "agent": 3}, "agent"),
        ({"message": "hi", "agent": "../x"}, "agent"),
        ({"message": "hi", "conversation_id": 7}, "conversation_id"),
        ({"message": "hi", "conversation_id": ""}, "conversation_id"),
        ({"message": "hi", "conversation_id": "a\r\nSet-Cookie: x"}, "conversation_id"),
        ({"message": "hi", "conversation_id": "abc\n"}, "conversation_id"),
        ({"message": "hi", "conversation_id": "x" * 129}, "conversation_id"),
    ],
)
def test_invalid_field_is_located(payload, field):
    assert field in errors(payload)


def test_every_error_is_a_loc_and_msg_pair():
    with pytest.raises(InvalidFields) as caught:
        load_or_422(SCHEMA, {"message": "", "stream": "no", "agent": "A"})
    assert len(caught.value.detail) == 3
    for item in caught.value.detail:
        assert set(item) == {"loc", "msg"}
        assert item["loc"][0] == "body" and isinstance(item["msg"], str)


def test_valid_conversation_id_passes_through():
    cid = "home:kitchen-1.2_x"
    assert (
        load_or_422(SCHEMA, {"message": "hi", "conversation_id": cid})[
            "conversation_id"
        ]
        == cid
    )
