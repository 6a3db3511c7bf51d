"""/openapi.json: valid, complete (every route), per app, public, lazily built."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from openapi_spec_validator import validate

from piagent import create_app
from piagent.settings import Settings
from piagent.web.apidoc import described
from tests.support.server import ROOT

KEY = "docs-test-key-0123456789"
SKIPPED = {"HEAD", "OPTIONS"}


def make_app(**settings):
    return create_app(Settings(ollama_host="http://127.0.0.1:9", **settings))


def document(app) -> dict:
    with app.test_client() as client:
        response = client.get("/openapi.json")
        assert response.status_code == 200
        return response.get_json()


@pytest.fixture(scope="module")
def app():
    return make_app()


@pytest.fixture(scope="module")
def doc(app):
    return document(app)


def test_the_document_is_valid_openapi_3_1(doc):
    assert doc["openapi"] == "3.1.0"
    validate(doc)


def test_every_registered_route_is_documented(app, doc):
    """A new view without an @operation record fails here."""
    missing = []
    for rule in app.url_map.iter_rules():
        path = rule.rule.replace("<path:", "<").replace("<", "{").replace(">", "}")
        for method in sorted(rule.methods - SKIPPED):
            operation = doc["paths"].get(path, {}).get(method.lower())
            if operation is None:
                missing.append(f"{method} {rule.rule}")
            else:
                assert operation["summary"], f"{method} {path} has no docstring"
                assert operation["responses"]
    assert missing == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/health"),
        ("get", "/ready"),
        ("get", "/agents"),
        ("post", "/chat"),
        ("get", "/conversations/{conversation_id}"),
        ("delete", "/conversations/{conversation_id}"),
        ("get", "/v1/models"),
        ("get", "/v1/models/{name}"),
        ("post", "/v1/chat/completions"),
        ("get", "/"),
        ("get", "/openapi.json"),
        ("get", "/docs"),
    ],
)
def test_each_endpoint_of_the_issue_is_there(doc, method, path):
    assert method in doc["paths"][path]


def test_chat_describes_json_and_the_three_stream_formats(doc):
    ok = doc["paths"]["/chat"]["post"]["responses"]["200"]
    assert set(ok["content"]) == {
        "application/json",
        "text/plain",
        "text/event-stream",
        "application/x-ndjson",
    }
    events = ok["content"]["text/event-stream"]["x-events"]
    names = {ref["$ref"].rsplit("/", 1)[1] for ref in events}
    assert names == {
        "TokenEvent",
        "ToolCallEvent",
        "ToolResultEvent",
        "DoneEvent",
        "StreamErrorEvent",
    }
    assert all(name in doc["components"]["schemas"] for name in names)
    assert ok["headers"]["X-Conversation-Id"]["required"] is True


def test_the_error_table_and_its_shapes(doc):
    responses = doc["paths"]["/chat"]["post"]["responses"]
    assert {"400", "401", "413", "415", "422", "429", "502", "503", "504"} <= set(
        responses
    )
    schema_of = {
        status: answer["content"]["application/json"]["schema"]["$ref"]
        for status, answer in responses.items()
        if status != "200"
    }
    assert schema_of.pop("422").endswith("/ValidationError")
    assert {ref.rsplit("/", 1)[1] for ref in schema_of.values()} == {"Error"}
    assert "Retry-After" in responses["429"]["headers"]
    assert "X-RateLimit-Remaining" in responses["429"]["headers"]
    # On every limited answer, when limits are set; never on public views.
    assert "X-RateLimit-Reset" in responses["200"]["headers"]
    assert (
        "X-RateLimit-Reset"
        not in doc["paths"]["/health"]["get"]["responses"]["200"]["headers"]
    )
    assert "Retry-After" in responses["503"]["headers"]
    assert "WWW-Authenticate" in responses["401"]["headers"]
    # Given once the body was read only: not on 400, 401, 413, 415, 429.
    assert "X-Conversation-Id" in responses["502"]["headers"]
    assert "X-Conversation-Id" not in responses["401"]["headers"]
    v1 = doc["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert "422" not in v1 and "413" not in v1  # OpenAI's clients get a 400
    assert v1["400"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/OpenAIError"
    )


def test_security_schemes_always_and_public_operations_open(doc):
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert doc["security"] == [{"bearer": []}, {"apiKey": []}]
    for path in ("/health", "/", "/openapi.json", "/docs"):
        assert doc["paths"][path]["get"]["security"] == []
    assert "security" not in doc["paths"]["/agents"]["get"]
    assert "401" not in doc["paths"]["/health"]["get"]["responses"]


def test_agents_are_an_enum_of_this_apps_agents(tmp_path):
    (tmp_path / "coder.md").write_text("You write code.\n")
    doc = document(make_app(agents_dir=str(tmp_path)))
    schemas = doc["components"]["schemas"]
    assert schemas["ChatRequest"]["properties"]["agent"]["enum"] == ["coder", "general"]
    assert schemas["ChatCompletion"]["properties"]["model"]["enum"] == [
        "coder",
        "general",
    ]
    message = schemas["ChatRequest"]["properties"]["message"]
    assert message["maxLength"] == 4000
    # Python's \\Z patterns are written the way JSON Schema reads them.
    assert "\\Z" not in json.dumps(doc)


def test_documents_need_no_key_and_api_docs_false_turns_them_off():
    with make_app(api_keys=KEY).test_client() as client:
        assert client.get("/openapi.json").status_code == 200
        docs = client.get("/docs")
        assert docs.status_code == 200
        assert "unsafe" not in docs.headers["Content-Security-Policy"]
        docs.close()
        asset = client.get("/docs/swagger-ui-bundle.js")
        assert asset.status_code == 200
        asset.close()
        assert client.get("/agents").status_code == 401
    with make_app().test_client() as client:
        for path in ("/docs/nope.js", "/docs/..%2fstatic_files.py", "/docs/%2e%2e"):
            missing = client.get(path)
            assert missing.status_code == 404 and "detail" in missing.get_json()
    with make_app(api_docs=False).test_client() as client:
        for path in ("/openapi.json", "/docs", "/docs/docs.js"):
            assert client.get(path).status_code == 404
        assert "/openapi.json" not in str(client.application.url_map)


def test_the_document_is_built_once_per_app(app, monkeypatch):
    import piagent.web.openapi as builder

    first = document(app)
    monkeypatch.setattr(builder, "build_document", lambda app: pytest.fail("again"))
    assert document(app) == first


def test_apispec_is_imported_only_when_the_document_is_asked_for():
    script = (
        "import sys\n"
        "from piagent import create_app\n"
        "from piagent.settings import Settings\n"
        "app = create_app(Settings(ollama_host='http://127.0.0.1:9'))\n"
        "client = app.test_client()\n"
        "client.get('/health'); client.get('/')\n"
        "before = 'apispec' in sys.modules\n"
        "client.get('/openapi.json')\n"
        "print(before, 'apispec' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == ["False", "True"]


def test_views_without_a_record_are_reported(app):
    """The check above relies on `described`; it sees a plain function as None."""

    def plain():
        return ""

    assert described(plain) is None
    assert described(app.view_functions["chat.chat"]).tag == "chat"


def test_metrics_are_described_when_on_without_rate_limit_answers():
    doc = document(make_app(metrics=True))
    validate(doc)
    operation = doc["paths"]["/metrics"]["get"]
    assert "text/plain" in operation["responses"]["200"]["content"]
    assert "401" in operation["responses"] and "429" not in operation["responses"]
    assert "X-RateLimit-Limit" not in operation["responses"]["200"].get("headers", {})
    assert "/metrics" not in document(make_app())["paths"]
