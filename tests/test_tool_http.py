"""The http tool against a loopback service: every limit, and what is refused.

In-process (no gevent): the deadline of a whole request is then checked
between reads; under gunicorn a timer enforces it (tests/test_tool_loop_http.py).
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from piagent.tools import ToolConfigError, ToolError
from piagent.tools.http import HttpTool, build, resolve
from piagent.tools.urls import BadUrl, covers, parse_url
from tests.support.http_target import HttpTarget


@pytest.fixture(scope="module")
def target():
    with HttpTarget() as service:
        yield service


def tool_for(target, *allow: str, env=None, **settings) -> HttpTool:
    header = {"allow": list(allow or [target.url + "/api/"])}
    header.update({key: [value] for key, value in settings.items()})
    return build(header, environ=(env or {}).get)


def run(tool: HttpTool, url: str, **arguments) -> dict:
    return json.loads(tool.run({"url": url, **arguments}))


def refused(tool: HttpTool, url: str, **arguments) -> str:
    with pytest.raises(ToolError) as caught:
        tool.run({"url": url, **arguments})
    return str(caught.value)


def test_get_under_the_prefix_returns_status_and_json_body(target):
    tool = tool_for(target)
    answer = run(tool, target.url + "/api/states/light.hall?x=1")
    assert answer["status"] == 200
    assert answer["content_type"] == "application/json"
    assert answer["body"] == {"path": "/api/states/light.hall?x=1", "method": "GET"}
    seen = target.seen[-1]
    assert seen.headers["Host"] == f"127.0.0.1:{target.port}"
    assert seen.headers["Accept-Encoding"] == "identity"
    assert "Authorization" not in seen.headers


def test_text_and_error_statuses_are_information_for_the_model(target):
    tool = tool_for(target)
    assert run(tool, target.url + "/api/text")["body"] == "plain words"
    answer = run(tool, target.url + "/api/status?code=404")
    assert (answer["status"], answer["body"]) == (404, {"message": "as asked"})


@pytest.mark.parametrize(
    "path",
    [
        "/apiary",  # not under /api/ at a slash
        "/admin",
        "/",
    ],
)
def test_a_url_outside_the_prefix_is_refused_and_never_sent(target, path):
    tool = tool_for(target)
    before = len(target.seen)
    assert "is not allowed" in refused(tool, target.url + path)
    assert len(target.seen) == before


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:{port}/api/../admin", "dot segments"),
        ("http://127.0.0.1:{port}/api/%2e%2e/admin", "dot segments"),
        ("http://127.0.0.1:{port}/api/./x", "dot segments"),
        ("http://127.0.0.1:{port}/api/..%2fadmin", "encoded slashes"),
        ("http://127.0.0.1:{port}/api/%5C..%5Cadmin", "encoded slashes"),
        ("http://user:pw@127.0.0.1:{port}/api/x", "user name or password"),
        ("http://127.0.0.1:{port}@evil.example/api/x", "user name or password"),
        ("http://127.0.0.1:{port}/api/a b", "whitespace"),
        ("http://127.0.0.1:{port}\\@evil/api/", "backslash"),
        ("ftp://127.0.0.1:{port}/api/", "only http"),
        ("http://127.0.0.1:99999/api/", "malformed"),
        ("/api/relative", "only http"),
        ("http://127.0.0.1:{port}/api/" + "x" * 2100, "longer than"),
    ],
)
def test_ambiguous_urls_are_refused_not_repaired(target, url, why):
    tool = tool_for(target)
    before = len(target.seen)
    assert why in refused(tool, url.format(port=target.port))
    assert len(target.seen) == before


def test_other_scheme_host_or_port_is_not_covered():
    prefix = parse_url("http://ha.local:8123/api/")
    assert covers(prefix, parse_url("http://HA.local.:8123/api/states"))
    assert not covers(prefix, parse_url("https://ha.local:8123/api/states"))
    assert not covers(prefix, parse_url("http://ha.local:8124/api/states"))
    assert not covers(prefix, parse_url("http://ha.local.evil/api/states"))
    assert not covers(prefix, parse_url("http://ha.local:8123/api"))
    bare = parse_url("http://ha.local:8123/api")
    assert covers(bare, parse_url("http://ha.local:8123/api"))
    assert covers(bare, parse_url("http://ha.local:8123/api/x"))
    assert not covers(bare, parse_url("http://ha.local:8123/apiary"))
    assert parse_url("http://ha.local/x").port == 80
    with pytest.raises(BadUrl):
        parse_url("http://ünïcode.local/api/")


def test_token_comes_from_the_environment_and_only_there(target):
    tool = tool_for(target, env={"HA_TOKEN": "s3cret"}, token_env="HA_TOKEN")
    run(tool, target.url + "/api/x")
    assert target.seen[-1].headers["Authorization"] == "Bearer s3cret"
    assert "s3cret" not in tool.description and "s3cret" not in repr(tool.parameters)


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"token_env": "HA_TOKEN"}, "HA_TOKEN is not set"),
        ({"token_env": "not a name"}, "not an environment variable name"),
        ({"methods": "GET, DELETE"}, "expected GET, POST"),
        ({"timeout": "0"}, "expected a number above 0"),
        ({"timeout": "soon"}, "expected a number above 0"),
        ({"max_bytes": "99999999"}, "at most 1048576"),
        ({"max_bytes": "1.5"}, "expected an integer above 0"),
    ],
)
def test_bad_settings_stop_start_up(target, settings, needle):
    with pytest.raises(ToolConfigError, match=needle):
        tool_for(target, **settings)


@pytest.mark.parametrize(
    ("allow", "needle"),
    [
        ([], "needs http.allow"),
        (["ftp://x/"], "only http"),
        (["http://x/api/?a=1"], "no query"),
        (["http://u:p@x/api/"], "user name"),
    ],
)
def test_bad_allow_lists_stop_start_up(allow, needle):
    with pytest.raises(ToolConfigError, match=needle):
        build({"allow": allow}, environ={}.get)


def test_allow_takes_several_lines_and_comma_separated_prefixes(target):
    tool = build(
        {"allow": [f"{target.url}/api/a/, {target.url}/api/b/", f"{target.url}/x/"]},
        environ={}.get,
    )
    assert [str(p) for p in tool.prefixes] == [
        f"{target.url}/api/a/",
        f"{target.url}/api/b/",
        f"{target.url}/x/",
    ]


def test_post_needs_the_agent_to_allow_it(target):
    get_only = tool_for(target)
    assert "method" not in get_only.parameters["properties"]
    assert "body" not in get_only.parameters["properties"]
    both = tool_for(target, methods="GET, POST")
    answer = run(
        both,
        target.url + "/api/services/light/turn_on",
        method="POST",
        body={"entity_id": "light.hall"},
    )
    assert answer["body"]["method"] == "POST"
    assert answer["body"]["body"] == {"entity_id": "light.hall"}
    seen = target.seen[-1]
    assert seen.headers["Content-Type"] == "application/json"
    assert "a body is only sent with method POST" in refused(
        both, target.url + "/api/x", body={"a": 1}
    )
    assert "larger than" in refused(
        both, target.url + "/api/x", method="POST", body={"a": "x" * 20000}
    )


def test_an_answer_over_max_bytes_is_not_read(target):
    tool = tool_for(target, max_bytes="1000")
    assert run(tool, target.url + "/api/big?n=1000")["body"] == "x" * 1000
    assert "larger than http.max_bytes=1000" in refused(
        tool, target.url + "/api/big?n=1001"
    )
    # Far larger than the cap: only about the cap is read, then it stops.
    assert "larger than" in refused(tool, target.url + "/api/big?n=5000000")


def test_a_compressed_answer_is_not_read(target):
    tool = tool_for(target)
    assert "gzip content, which is not read" in refused(tool, target.url + "/api/gzip")


def test_no_answer_within_the_timeout(target):
    tool = tool_for(target, timeout="0.3")
    assert "no answer within 0.3 s" in refused(tool, target.url + "/api/slow?s=2")


def test_a_dripping_answer_is_cut_at_the_timeout(target):
    tool = tool_for(target, timeout="0.3")
    message = refused(tool, target.url + "/api/drip?n=100&gap=0.05")
    assert "took longer than 0.3 s" in message


def test_redirects_are_followed_only_to_allowed_urls(target):
    tool = tool_for(target)
    inside = f"{target.url}/api/redirect?to=/api/landed"
    assert run(tool, inside)["body"]["path"] == "/api/landed"
    outside = f"{target.url}/api/redirect?to=/admin"
    assert "not allowed; not followed" in refused(tool, outside)
    elsewhere = f"{target.url}/api/redirect?to=http://192.0.2.1/api/"
    assert "not allowed; not followed" in refused(tool, elsewhere)


def test_a_redirect_loop_stops(target):
    tool = tool_for(target)
    hop = "/api/redirect?to=" + "/api/redirect%3Fto%3D" * 5 + "/api/end"
    assert "more than 3 redirects" in refused(tool, target.url + hop)


def test_a_host_is_resolved_once_and_connected_to_by_address(target):
    """DNS pinning: the name resolves at start-up; later answers do not count."""
    answers = {"ha.test": ["127.0.0.1"]}
    calls = []

    def resolver(host, port):
        calls.append(host)
        return answers[host]

    tool = build(
        {"allow": [f"http://ha.test:{target.port}/api/"]},
        environ={}.get,
        resolver=resolver,
    )
    assert tool.pin() == []
    answers["ha.test"] = ["192.0.2.1"]  # rebinding to another machine
    answer = run(tool, f"http://ha.test:{target.port}/api/x")
    assert answer["status"] == 200
    assert target.seen[-1].headers["Host"] == f"ha.test:{target.port}"
    run(tool, f"http://ha.test:{target.port}/api/y")
    assert calls == ["ha.test"]


def test_a_host_that_does_not_resolve_yet_is_tried_at_first_use(target):
    answers: dict[str, list[str]] = {}

    def resolver(host, port):
        if host not in answers:
            raise socket.gaierror("Name or service not known")
        return answers[host]

    tool = build(
        {"allow": [f"http://ha.test:{target.port}/api/"]},
        environ={}.get,
        resolver=resolver,
    )
    [problem] = tool.pin()
    assert "cannot resolve ha.test" in problem
    assert "cannot resolve ha.test" in refused(
        tool, f"http://ha.test:{target.port}/api/"
    )
    answers["ha.test"] = ["127.0.0.1"]
    assert run(tool, f"http://ha.test:{target.port}/api/x")["status"] == 200


def test_the_next_address_is_tried_when_one_refuses(target):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    unused = closed.getsockname()[1]
    closed.close()
    tool = build(
        {"allow": [f"http://ha.test:{target.port}/api/"]},
        environ={}.get,
        resolver=lambda host, port: ["::1", "127.0.0.1"],
    )
    # ::1 refuses (the service listens on 127.0.0.1 only); 127.0.0.1 answers.
    assert run(tool, f"http://ha.test:{target.port}/api/x")["status"] == 200
    down = tool_for(target, f"http://127.0.0.1:{unused}/api/")
    assert "cannot connect to 127.0.0.1" in refused(
        down, f"http://127.0.0.1:{unused}/api/x"
    )


def test_localhost_resolves_with_the_system_resolver():
    assert "127.0.0.1" in resolve("localhost", 80) or "::1" in resolve("localhost", 80)


@pytest.fixture(scope="module")
def tls_service(tmp_path_factory):
    """A TLS service with a self-signed certificate for ha.test."""
    directory: Path = tmp_path_factory.mktemp("tls")
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=ha.test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    names: list[str | None] = []

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            context.sni_callback = lambda sock, name, ctx: names.append(name)
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1024)
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], names
    listener.close()


def test_https_checks_the_certificate_against_the_name_sent_as_sni(tls_service):
    port, names = tls_service
    tool = build(
        {"allow": [f"https://ha.test:{port}/api/"]},
        environ={}.get,
        resolver=lambda host, port: ["127.0.0.1"],
    )
    message = refused(tool, f"https://ha.test:{port}/api/x")
    assert "TLS with ha.test failed" in message
    assert "certificate" in message.lower()
    assert names == ["ha.test"]
