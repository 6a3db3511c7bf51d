"""A model that calls tools badly: whatever it sends, /chat answers 200 or the
provider's own status, never a 500, and the bad call is the model's error.

In-process (no gevent), many examples: random tool names, arguments of any
JSON (or none), several calls a round, more rounds than allowed.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from piagent import create_app
from piagent.settings import Settings
from tests.conftest import TEST_TIMEOUT
from tests.support.fake_ollama import Step
from tests.test_hostile_input import json_values

calls = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.one_of(
                st.sampled_from(["clock", "calculator", "http", ""]),
                st.text(max_size=8),
            ),
            "arguments": st.one_of(
                json_values,
                st.fixed_dictionaries({"expression": json_values}),
                st.just({"expression": "9**9**9"}),
                st.text(max_size=20),
            ),
        }
    ),
    min_size=1,
    max_size=10,
)
scripts = st.lists(
    st.builds(Step, text=st.lists(st.text(max_size=5), max_size=2), calls=calls),
    min_size=1,
    max_size=4,
)


@pytest.fixture(scope="module")
def tool_app(fake_ollama, tmp_path_factory):
    directory = tmp_path_factory.mktemp("agents")
    (directory / "helper.md").write_text(
        "---\ntools: clock, calculator\n---\nYou help.\n"
    )
    return create_app(
        Settings(
            ollama_host=fake_ollama.url,
            model_timeout=float(TEST_TIMEOUT),
            rate_limit_chat="",
            rate_limit_default="",
            agents_dir=str(directory),
            max_tool_steps=2,
        )
    )


@settings(
    max_examples=100,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=scripts, stream=st.booleans())
def test_any_tool_calls_are_answered_never_a_500(tool_app, ollama, script, stream):
    ollama.reset()
    ollama.behaviour.script = list(script)
    body = {"message": "go", "agent": "helper", "stream": stream}
    response = tool_app.test_client().post(
        "/chat", json=body, headers={"Accept": "text/event-stream"}
    )
    assert response.status_code == 200, response.get_data()[:300]
    data = response.get_data(as_text=True)
    assert "Traceback" not in data
    if stream:
        assert "event: done" in data
    else:
        reply = json.loads(data)
        assert all(isinstance(c["error"], bool) for c in reply["tool_calls"])
    # At most MAX_TOOL_STEPS=2 rounds ran, so at most 3 model calls.
    assert len(ollama.requests) <= 3
