"""One JSON shape for every error, including the unexpected 500."""

from piagent import create_app
from piagent.settings import Settings


def test_unexpected_error_is_a_json_500_without_a_trace():
    app = create_app(Settings(ollama_host="http://127.0.0.1:9"))

    @app.get("/explode")
    def explode():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/explode")
    assert response.status_code == 500
    assert response.get_json() == {"detail": "internal server error"}
    assert b"secret internals" not in response.data
