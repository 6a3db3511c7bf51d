"""The built-in tools, the toolbox's checks, and tools in agent files."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from piagent.agents import load_agents
from piagent.settings import Settings, SettingsError, environment_value
from piagent.tools import Toolbox, ToolConfigError, ToolError, build_toolbox
from piagent.tools.calculator import CalculatorTool, calculate
from piagent.tools.clock import ClockTool


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("6*7+0.5", 42.5),
        ("(12.5 + 3) * 4", 62.0),
        ("2**10", 1024),
        ("-3 // 2", -2),
        ("7 % 3", 1),
        ("+-+5", -5),
        ("0.1 + 0.2", 0.3),
        ("1/3", 0.333333333333),
        ("10**100", 10**100),
        ("2 ** -2", 0.25),
        (" 1_000 * 3 ", 3000),
    ],
)
def test_calculator_does_arithmetic(expression, value):
    assert calculate(expression) == value


@pytest.mark.parametrize(
    ("expression", "needle"),
    [
        ("__import__('os').system('id')", "only"),
        ("x + 1", "only"),
        ("abs(-1)", "only"),
        ("(1).real", "only"),
        ("[1, 2]", "only"),
        ("1 if 1 else 2", "only"),
        ("'a' * 3", "only numbers"),
        ("True + 1", "only numbers"),
        ("1j * 1j", "only numbers"),
        ("2 ^ 10", "write **"),
        ("1 << 10", "only"),
        ("1 / 0", "division by zero"),
        ("1 % 0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("9 ** 9 ** 9", "too large"),
        ("10 ** 1000", "too large"),
        ("2.0 ** 5000", "too large"),
        ("1e300 * 1e300", "too large"),
        ("1e200", "too large"),
        ("(10**100) * (10**100)", "too large"),
        ("(-8) ** 0.5", "not a real number"),
        ("1 +", "not an arithmetic expression"),
        ("1" + "+1" * 60, "more than 100 parts"),
        ("1" * 201, "longer than 200"),
    ],
)
def test_calculator_refuses_what_is_not_bounded_arithmetic(expression, needle):
    with pytest.raises(ToolError, match=re.escape(needle)):
        calculate(expression)


def test_the_worst_allowed_expression_takes_no_time():
    started = time.perf_counter()
    for expression in ("9**9**9", "(2**399)*(2**399)", "9**9**9**9**9**9**9**9"):
        with pytest.raises(ToolError):
            calculate(expression)
    assert calculate("(2**200)*(2**199)") == 2**399
    assert calculate("(" * 99 + "1" + ")" * 99) == 1
    assert time.perf_counter() - started < 0.1


def test_calculator_answers_json():
    assert json.loads(CalculatorTool().run({"expression": "6*7"})) == {"result": 42}


def test_clock_tells_date_time_and_weekday_in_its_zone():
    moment = datetime(2026, 12, 3, 13, 5, 9, tzinfo=UTC)
    zone = ZoneInfo("Europe/Berlin")
    tool = ClockTool(zone, now=lambda z: moment.astimezone(z))
    assert json.loads(tool.run({})) == {
        "date": "2026-12-03",
        "time": "14:05:09",
        "weekday": "Thursday",
        "timezone": "Europe/Berlin",
        "utc_offset": "+01:00",
    }
    assert "Europe/Berlin" in tool.description


def test_clock_without_a_zone_tells_local_time():
    answer = json.loads(ClockTool(None).run({}))
    assert answer["date"] == datetime.now().astimezone().strftime("%Y-%m-%d")
    assert answer["utc_offset"]


def toolbox(*names: str, **settings: list[str]) -> Toolbox:
    built = build_toolbox(list(names), settings, environ={}.get)
    assert built is not None
    return built


def test_toolbox_runs_a_call_and_times_it():
    outcome = toolbox("calculator").call("calculator", '{"expression": "2+2"}')
    assert (json.loads(outcome.content), outcome.error) == ({"result": 4}, False)
    assert outcome.seconds >= 0


@pytest.mark.parametrize(
    ("name", "arguments", "needle"),
    [
        ("weather", "{}", "unknown tool 'weather'; the tools are clock, calculator"),
        ("calculator", "{not json", "not valid JSON"),
        ("calculator", '"6*7"', "must be a JSON object"),
        ("calculator", "{}", "'expression' is required"),
        ("calculator", '{"expression": 42}', "must be a JSON string"),
        ("calculator", '{"expression": "1", "x": 1}', "unknown argument 'x'"),
        ("calculator", '{"expression": "1/0"}', "division by zero"),
        ("clock", '{"zone": "UTC"}', "unknown argument 'zone' (arguments: none)"),
    ],
)
def test_bad_calls_are_error_text_for_the_model(name, arguments, needle):
    outcome = toolbox("clock", "calculator").call(name, arguments)
    assert outcome.error is True
    assert needle in json.loads(outcome.content)["error"]


def test_a_tool_that_breaks_is_an_error_for_the_model_and_logged(caplog):
    class Broken:
        name = "broken"
        description = "always fails"
        parameters = {"type": "object", "properties": {}}

        def run(self, arguments):
            raise KeyError("bug")

    with caplog.at_level("ERROR", logger="piagent"):
        outcome = Toolbox([Broken()]).call("broken", "")
    assert outcome.error
    assert json.loads(outcome.content) == {
        "error": "the tool broken failed unexpectedly"
    }
    assert "tool broken failed" in caplog.text


def test_definitions_are_openai_functions_built_once():
    box = toolbox("clock", "calculator")
    assert [d["function"]["name"] for d in box.definitions] == ["clock", "calculator"]
    assert box.definitions[1]["type"] == "function"
    assert box.definitions[1]["function"]["parameters"]["required"] == ["expression"]
    assert box.definitions is box.definitions


@pytest.mark.parametrize(
    ("names", "settings", "needle"),
    [
        (["clock, weather"], {}, "unknown tool 'weather'; the tools are clock, "),
        (["clock"], {"clock.zone": ["UTC"]}, "clock.zone: not a tool setting"),
        (["clock"], {"calculator.x": ["1"]}, "calculator.x: not a tool setting"),
        (["clock"], {"http.allow": ["http://x/"]}, "http is not in this agent's tools"),
        (["clock"], {"clock.timezone": ["Mars/Olympus"]}, "not a time zone"),
        (["clock"], {"clock.timezone": ["../../etc/passwd"]}, "not a time zone"),
        (["clock"], {"clock.timezone": ["UTC", "UTC"]}, "given 2 times"),
        (["http"], {}, "http needs http.allow"),
    ],
)
def test_bad_tool_settings_are_refused(names, settings, needle):
    with pytest.raises(ToolConfigError, match=needle):
        build_toolbox(names, settings, environ={}.get)


def test_no_tools_named_is_no_toolbox():
    assert build_toolbox([], {}, environ={}.get) is None


HOME = """---
model: qwen2.5:3b-instruct
tools: clock, calculator
tools: http
clock.timezone: Europe/Berlin
http.allow: http://192.168.1.20:8123/api/states/
http.allow: http://192.168.1.20:8123/api/services/light/
http.token_env: HA_TOKEN
http.methods: GET, POST
http.timeout: 5
http.max_bytes: 8192
---
You run a house.
"""


def test_an_agent_file_declares_tools_and_their_settings(tmp_path):
    (tmp_path / "home.md").write_text(HOME)
    agents = load_agents(
        Settings(agents_dir=str(tmp_path)), environ={"HA_TOKEN": "t0ken"}.get
    )
    home = agents["home"]
    assert home.tools is not None
    assert home.tools.names == ["clock", "calculator", "http"]
    assert home.system_prompt == "You run a house."
    assert agents["general"].tools is None
    http = home.tools.definitions[2]["function"]
    assert http["parameters"]["properties"]["method"]["enum"] == ["GET", "POST"]
    assert "192.168.1.20:8123/api/services/light/" in http["description"]


@pytest.mark.parametrize(
    ("header", "needle"),
    [
        ("tools: clock, teleport", "unknown tool 'teleport'"),
        ("tools: http", "http needs http.allow"),
        (
            "tools: http\nhttp.allow: http://x/api/\nhttp.token_env: NOPE",
            "NOPE is not set",
        ),
        ("tools: clock\nclock.timezone: Nowhere/Land", "not a time zone"),
        ("tools: clock\nclok.timezone: UTC", "clok.timezone: not a tool setting"),
        ("tools: clock\nmodel: a\nmodel: b", "model: given more than once"),
        ("tools: clock\nTools clock", "expected one of model: ..., tools: ..."),
    ],
)
def test_a_broken_tools_header_stops_start_up_naming_the_file(tmp_path, header, needle):
    path = tmp_path / "home.md"
    path.write_text(f"---\n{header}\n---\nPrompt.\n")
    with pytest.raises(SettingsError) as caught:
        load_agents(Settings(agents_dir=str(tmp_path)), environ={}.get)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert needle in message
    assert "\n" not in message


def test_an_http_host_that_does_not_resolve_at_start_up_is_a_warning(caplog):
    def resolver(host, port):
        raise OSError("Name or service not known")

    with caplog.at_level("WARNING", logger="piagent"):
        box = build_toolbox(
            ["http"],
            {"http.allow": ["http://ha.test:8123/api/"]},
            environ={}.get,
            resolver=resolver,
            source="/etc/piagent/agents/home.md",
        )
    assert box is not None
    [record] = caplog.records
    assert record.getMessage().startswith(
        "/etc/piagent/agents/home.md: the http tool's cannot resolve ha.test"
    )
    assert "tried again at its first use" in record.getMessage()


def test_a_token_variable_is_read_from_the_environment_or_dot_env(
    tmp_path, monkeypatch
):
    (tmp_path / ".env").write_text("PIAGENT_TEST_ONLY_TOKEN=from-the-file\n")
    monkeypatch.chdir(tmp_path)
    assert environment_value("PIAGENT_TEST_ONLY_TOKEN") == "from-the-file"
    assert environment_value("PIAGENT_TEST_ONLY_UNSET") is None
