"""/metrics in process: every metric there with its kind, the documented names,
the dashboard's queries, what a turn adds, and prometheus_client only when on."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from piagent.metrics import NAMES
from tests.support.fake_ollama import DEFAULT_TOKENS
from tests.support.server import MODEL, ROOT

DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"


@pytest.fixture
def metrics_client(make_app, ollama):
    return make_app(metrics=True).test_client()


def types(text: str) -> dict[str, str]:
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def sample(text: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_every_metric_is_served_with_its_kind(metrics_client):
    response = metrics_client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    served = types(response.get_data(as_text=True))
    for name, kind in NAMES.items():
        base = name.removesuffix("_total") if kind == "counter" else name
        assert served.get(base) == kind or served.get(name) == kind, name
    # NAMES (and so docs/metrics.md, checked against it) lists every one.
    ours = {
        name + "_total" if kind == "counter" and not name.endswith("_total") else name
        for name, kind in served.items()
        if name.startswith("piagent_")
    }
    assert ours == set(NAMES)


def test_a_turn_counts_its_request_times_and_tokens(metrics_client):
    before = metrics_client.get("/metrics").get_data(as_text=True)
    response = metrics_client.post("/chat", json={"message": "hi"}, buffered=True)
    assert response.status_code == 200
    after = metrics_client.get("/metrics").get_data(as_text=True)
    chat = 'piagent_http_requests_total{endpoint="/chat",status="200"}'
    assert sample(after, chat) == sample(before, chat) + 1
    replies = f'piagent_reply_tokens_total{{model="{MODEL}"}}'
    assert sample(after, replies) == sample(before, replies) + len(DEFAULT_TOKENS)
    first = f'piagent_time_to_first_token_seconds_count{{model="{MODEL}"}}'
    assert sample(after, first) == sample(before, first) + 1
    assert sample(after, "piagent_generations_waiting") == 0


def test_an_unknown_path_is_counted_as_unmatched(metrics_client):
    metrics_client.get("/no/such/page")
    text = metrics_client.get("/metrics").get_data(as_text=True)
    assert sample(
        text, 'piagent_http_requests_total{endpoint="unmatched",status="404"}'
    )


def test_an_unreachable_model_server_is_counted_by_kind(make_app):
    client = make_app(metrics=True, ollama_host="http://127.0.0.1:9").test_client()
    series = 'piagent_upstream_errors_total{kind="unreachable"}'
    before = sample(client.get("/metrics").get_data(as_text=True), series)
    assert client.post("/chat", json={"message": "hi"}).status_code == 502
    text = client.get("/metrics").get_data(as_text=True)
    assert sample(text, series) == before + 1
    assert sample(text, 'piagent_host_up{host="http://127.0.0.1:9"}') == 0


def test_the_docs_list_every_metric():
    text = (ROOT / "docs" / "metrics.md").read_text()
    for name, kind in NAMES.items():
        assert f"| `{name}` | {kind} |" in text, name


def test_every_metric_the_dashboard_queries_exists():
    dashboard = json.loads(DASHBOARD.read_text())
    queried = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            queried |= set(re.findall(r"piagent_[a-z_]+", target["expr"]))
    assert queried
    for name in queried:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert base in NAMES, name
        if base != name:
            assert NAMES[base] == "histogram", name


def test_prometheus_client_is_imported_only_when_metrics_are_on():
    code = (
        "import sys\n"
        "from piagent import create_app\n"
        "from piagent.settings import Settings\n"
        "create_app(Settings(ollama_host='http://127.0.0.1:9'))\n"
        "print('prometheus_client' in sys.modules)\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT
    )
    assert found.stdout.strip() == "False", found.stderr
