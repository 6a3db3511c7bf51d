"""One JSON shape for every error, including the unexpected 500."""

import pytest

from piagent.errors import (
    BadRequest,
    GenerationTimeout,
    ModelMissing,
    PayloadTooLarge,
    QueueFull,
    StateUnavailable,
    StreamStalled,
    UnknownModel,
    UnsupportedMediaType,
    invalid_field,
)
from piagent.web.errors import openai_error_body, openai_status


def test_unexpected_error_is_a_json_500_without_a_trace(make_app):
    app = make_app(fresh=True)

    @app.get("/explode")
    def explode():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/explode")
    assert response.status_code == 500
    assert response.get_json() == {"detail": "internal server error"}
    assert b"secret internals" not in response.data


def test_unexpected_error_under_v1_is_openais_shape_without_a_trace(make_app):
    app = make_app(fresh=True)

    @app.get("/v1/explode")
    def explode():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/v1/explode")
    assert response.status_code == 500
    assert response.get_json() == {
        "error": {
            "message": "internal server error",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    assert b"secret internals" not in response.data


@pytest.mark.parametrize(
    ("exc", "status", "kind", "code"),
    [
        (BadRequest("x"), 400, "invalid_request_error", None),
        (PayloadTooLarge("x"), 400, "invalid_request_error", None),
        (UnsupportedMediaType("x"), 400, "invalid_request_error", None),
        (
            invalid_field("temperature", "x"),
            400,
            "invalid_request_error",
            "invalid_value",
        ),
        (UnknownModel("x"), 404, "invalid_request_error", "model_not_found"),
        (QueueFull("x", 3), 503, "server_error", "queue_full"),
        (StateUnavailable("x"), 503, "server_error", "state_unavailable"),
        (ModelMissing("x"), 502, "server_error", "model_missing"),
        (GenerationTimeout("x"), 504, "server_error", "generation_timeout"),
        (StreamStalled("x"), 502, "server_error", "model_server_error"),
    ],
)
def test_every_error_has_an_openai_type_code_and_status(exc, status, kind, code):
    error = openai_error_body(exc)["error"]
    assert (openai_status(exc.status), error["type"], error["code"]) == (
        status,
        kind,
        code,
    )
    assert error["message"]
