"""The shipped deployment: systemd unit, installer and uninstaller, env file."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from decouple import Config, RepositoryEnv

from piagent.hosts import allowed_hosts
from piagent.keys import digest_of, parse_keys_file
from piagent.settings import Settings
from tests.support.server import ROOT, base_env, free_port

UNIT = ROOT / "deploy" / "piagent.service"
INSTALL = ROOT / "deploy" / "install.sh"
UNINSTALL = ROOT / "deploy" / "uninstall.sh"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
# The only substitution made for `systemd-analyze verify`: the venv's gunicorn,
# which exists only on an installed Pi, becomes this checkout's gunicorn.
INSTALLED_GUNICORN = "/opt/piagent/bin/gunicorn"


def unit_directives() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def exec_start() -> list[str]:
    [command] = unit_directives()["ExecStart"]
    return shlex.split(command)


def local_gunicorn() -> str:
    path = Path(sys.executable).with_name("gunicorn")
    assert os.access(path, os.X_OK), path
    return str(path)


# What the installer would find on a Pi named "pi" (`hostname`, `hostname -I`).
A_PI = {"HOST_NAME": "pi", "HOST_ADDRESSES": "192.168.1.20 fd00::20"}


def run_script(script: Path, destdir: Path, *args: str, **env: str) -> str:
    result = subprocess.run(
        ["bash", str(script), *args],
        env={**os.environ, "DESTDIR": str(destdir), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def installed_key(path: Path) -> str:
    """The key of the installer's `admin KEY` line, as the guide reads it."""
    [line] = [line for line in path.read_text().splitlines() if line[:1] != "#"]
    return line.split()[1]


def install(destdir: Path, **env: str) -> str:
    """The real installer, staged under destdir, without root or a venv, on
    what looks like a Pi named pi unless `env` says otherwise."""
    return run_script(INSTALL, destdir, "--no-system", "--no-venv", **{**A_PI, **env})


@pytest.mark.skipif(
    SYSTEMD_ANALYZE is None and not os.environ.get("CI"),
    reason="systemd is not installed (apt-get install systemd; CI does)",
)
def test_unit_passes_systemd_analyze_verify(tmp_path):
    unit = tmp_path / "piagent.service"
    text = UNIT.read_text()
    assert INSTALLED_GUNICORN in text
    unit.write_text(text.replace(INSTALLED_GUNICORN, local_gunicorn()))
    result = subprocess.run(
        [SYSTEMD_ANALYZE or "systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # Unknown or misspelt directives are only warnings: allow none.
    assert "piagent.service" not in result.stdout + result.stderr


def test_unit_runs_unprivileged_hardened_and_after_ollama_without_needing_it():
    unit = unit_directives()
    assert unit["User"] == ["piagent"] and unit["Group"] == ["piagent"]
    assert unit["EnvironmentFile"] == ["/etc/piagent/piagent.env"]
    assert "ollama.service" in unit["After"][0].split()
    for dependency in ("Requires", "Wants", "BindsTo", "Requisite"):
        assert "ollama.service" not in " ".join(unit.get(dependency, []))
    assert unit["Restart"] == ["on-failure"]
    for key, value in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("StateDirectory", "piagent"),
    ]:
        assert unit[key] == [value], key
    assert "ReadWritePaths" not in unit


def test_unit_allows_two_descriptors_for_every_connection_gunicorn_accepts():
    limit = int(unit_directives()["LimitNOFILE"][0])
    worker_connections = int(
        re.search(
            r'_count\("WORKER_CONNECTIONS", (\d+)',
            (ROOT / "gunicorn.conf.py").read_text(),
        )[1]
    )
    # a client socket and an upstream one per stream, plus files and sockets
    # of the process itself
    assert limit >= 2 * worker_connections + 256
    assert "time-sync.target" in unit_directives()["After"][0]


def test_unit_stop_timeout_outlasts_gunicorns_grace_period():
    stop_seconds = int(unit_directives()["TimeoutStopSec"][0])
    assert stop_seconds > 30  # GRACEFUL_TIMEOUT's default, gunicorn.conf.py


def test_installer_twice_keeps_the_users_settings_and_agents(tmp_path):
    first = install(tmp_path)
    assert "writing /etc/piagent/piagent.env" in first
    env_file = tmp_path / "etc/piagent/piagent.env"
    agent = tmp_path / "etc/piagent/agents/pirate.md"
    env_file.write_text(env_file.read_text() + "TEMPERATURE=0.1\n")
    agent.write_text("Talk like a pirate.")
    edited = env_file.read_text()
    keys = tmp_path / "etc/piagent/keys"
    key = keys.read_text()
    second = install(tmp_path)
    assert "keeping /etc/piagent/piagent.env" in second
    assert "API key" not in second and "WARNING" not in second
    assert keys.read_text() == key
    assert env_file.read_text() == edited
    assert agent.read_text() == "Talk like a pirate."
    assert (tmp_path / "etc/piagent/piagent.env.default").is_file()
    assert (tmp_path / "etc/systemd/system/piagent.service").read_bytes() == (
        UNIT.read_bytes()
    )


def test_a_fresh_install_gets_an_api_key_only_the_service_can_read(tmp_path):
    output = install(tmp_path)
    assert "writing a new API key for the owner 'admin' to /etc/piagent/keys" in output
    keys_file = tmp_path / "etc/piagent/keys"
    assert oct(keys_file.stat().st_mode & 0o777) == "0o640"
    [line] = parse_keys_file(keys_file.read_text(), "keys")
    key = installed_key(keys_file)
    assert line.owner == "admin" and len(key) >= 32
    assert line.digest == digest_of(key)
    assert key not in output  # the installer says where, never what


def test_an_upgrade_without_keys_warns_that_the_lan_is_let_in(tmp_path):
    install(tmp_path)
    env_file = tmp_path / "etc/piagent/piagent.env"
    env_file.write_text(
        re.sub(
            r"^API_KEYS_FILE=.*$", "API_KEYS_FILE=", env_file.read_text(), flags=re.M
        )
    )
    (tmp_path / "etc/piagent/keys").unlink()
    again = install(tmp_path)
    assert "WARNING: /etc/piagent/piagent.env sets no API keys" in again
    assert not (tmp_path / "etc/piagent/keys").exists()


def test_installed_env_file_is_valid_settings_for_the_service(tmp_path):
    install(tmp_path)
    env_file = tmp_path / "etc/piagent/piagent.env"
    assert oct(env_file.stat().st_mode & 0o777) == "0o640"
    config = Config(RepositoryEnv(str(env_file)))
    settings = Settings.from_env(config)
    assert settings.agents_dir == "/etc/piagent/agents"
    assert settings.log_format == "json"
    assert settings.api_keys_file == "/etc/piagent/keys"
    assert config("BIND") == "127.0.0.1:8000"


PI_HOSTS = "localhost,*.localhost,127.0.0.1,::1,pi,pi.local,192.168.1.20,fd00::20"


def test_a_fresh_install_answers_to_the_pis_names_and_addresses_and_says_so(
    tmp_path,
):
    output = install(tmp_path)
    env_file = tmp_path / "etc/piagent/piagent.env"
    assert f"\nALLOWED_HOSTS={PI_HOSTS}\n" in env_file.read_text()
    assert f"piagent answers to the host names {PI_HOSTS}" in output
    settings = Settings.from_env(Config(RepositoryEnv(str(env_file))))
    shown = allowed_hosts(settings).describe().split(", ")
    assert sorted(shown) == sorted(PI_HOSTS.split(","))


def test_a_host_name_that_is_no_dns_name_is_left_out(tmp_path):
    install(tmp_path, HOST_NAME="my_pi", HOST_ADDRESSES="")
    env_file = tmp_path / "etc/piagent/piagent.env"
    assert "\nALLOWED_HOSTS=localhost,*.localhost,127.0.0.1,::1\n" in (
        env_file.read_text()
    )
    Settings.from_env(Config(RepositoryEnv(str(env_file))))


def test_this_machines_own_names_make_valid_settings(tmp_path):
    """Without stand-ins: `hostname` and `hostname -I` of whatever runs this."""
    run_script(INSTALL, tmp_path, "--no-system", "--no-venv")
    env_file = tmp_path / "etc/piagent/piagent.env"
    settings = Settings.from_env(Config(RepositoryEnv(str(env_file))))
    assert settings.allowed_hosts.startswith("localhost,*.localhost,127.0.0.1,::1")


def test_an_upgrade_without_allowed_hosts_suggests_the_line(tmp_path):
    install(tmp_path)
    env_file = tmp_path / "etc/piagent/piagent.env"
    env_file.write_text(
        re.sub(r"^ALLOWED_HOSTS=.*\n", "", env_file.read_text(), flags=re.M)
    )
    again = install(tmp_path)
    assert "has no ALLOWED_HOSTS" in again
    assert f"add: ALLOWED_HOSTS={PI_HOSTS}" in again
    assert "ALLOWED_HOSTS" not in env_file.read_text()  # the user's file is kept


def test_installer_enables_the_nginx_site_in_place_of_the_default(tmp_path):
    available = tmp_path / "etc/nginx/sites-available"
    enabled = tmp_path / "etc/nginx/sites-enabled"
    available.mkdir(parents=True)
    enabled.mkdir()
    (available / "default").write_text("server { listen 80 default_server; }")
    (enabled / "default").symlink_to("/etc/nginx/sites-available/default")
    install(tmp_path)
    site = available / "piagent"
    assert site.read_bytes() == (ROOT / "deploy/nginx/piagent.conf").read_bytes()
    assert os.readlink(enabled / "piagent") == "/etc/nginx/sites-available/piagent"
    assert not (enabled / "default").exists()
    site.write_text("# edited for TLS\n")
    install(tmp_path)
    assert site.read_text() == "# edited for TLS\n"


def test_installer_refuses_to_change_the_system_without_root():
    command = ["bash", "-s"]
    if os.geteuid() == 0:
        # As root, drop to "nobody" so that the check, not an install, runs.
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + (
            command
        )
    result = subprocess.run(
        command,
        input=INSTALL.read_text(),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "run as root: sudo make install" in result.stderr


def test_installer_rejects_an_unknown_option(tmp_path):
    result = subprocess.run(
        ["bash", str(INSTALL), "--no-system", "--frobnicate"],
        env={**os.environ, "DESTDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "unknown option --frobnicate" in result.stderr
    assert not any(tmp_path.iterdir())


def test_uninstall_keeps_settings_and_purge_removes_them(tmp_path):
    (tmp_path / "etc/nginx/sites-available").mkdir(parents=True)
    install(tmp_path)
    run_script(UNINSTALL, tmp_path, "--no-system")
    assert not (tmp_path / "opt/piagent").exists()
    assert not (tmp_path / "etc/systemd/system/piagent.service").exists()
    assert not (tmp_path / "etc/nginx/sites-enabled/piagent").exists()
    assert (tmp_path / "etc/piagent/piagent.env").is_file()
    run_script(UNINSTALL, tmp_path, "--no-system", "--purge")
    assert not (tmp_path / "etc/piagent").exists()
    assert not (tmp_path / "etc/nginx/sites-available/piagent").exists()


def test_installed_files_and_the_units_command_serve_piagent(tmp_path, fake_ollama):
    """ExecStart as written, with the installed app files and settings.

    Substituted, since there is no venv or root here: the venv's gunicorn by
    this Python's, the staged install's paths for /opt/piagent/app and
    /etc/piagent/agents, the state directory by a temp one, and OLLAMA_HOST
    and BIND by the fake Ollama's and a free port.
    """
    stage = tmp_path / "root"
    install(stage)
    state = tmp_path / "state"
    state.mkdir()
    command = [
        arg.replace("/opt/piagent/app", str(stage / "opt/piagent/app")).replace(
            "/var/lib/piagent", str(state)
        )
        for arg in exec_start()
    ]
    assert command[0] == INSTALLED_GUNICORN
    command[:1] = [sys.executable, "-m", "gunicorn"]
    config = Config(RepositoryEnv(str(stage / "etc/piagent/piagent.env")))
    settings_env = {
        key: config(key)
        for key in re.findall(
            r"^([A-Z_]+)=", (stage / "etc/piagent/piagent.env").read_text(), re.M
        )
    }
    port = free_port()
    settings_env.update(
        AGENTS_DIR=str(stage / "etc/piagent/agents"),
        API_KEYS_FILE=str(stage / "etc/piagent/keys"),
        OLLAMA_HOST=fake_ollama.url,
        BIND=f"127.0.0.1:{port}",
    )
    env = {**base_env(state), **settings_env}
    # The service imports piagent from its venv, never from a checkout.
    env["PYTHONPATH"] = str(ROOT)
    log = (tmp_path / "service.log").open("wb")
    process = subprocess.Popen(
        command, cwd=state, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, (tmp_path / "service.log").read_text()
            try:
                refused = requests.get(url + "/ready", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "service did not start"
                time.sleep(0.05)
        assert refused.status_code == 401
        key = installed_key(stage / "etc/piagent/keys")
        response = requests.get(
            url + "/ready", headers={"Authorization": f"Bearer {key}"}, timeout=5
        )
        assert response.status_code == 200
        assert response.json()["status"] == "ready"
    finally:
        process.terminate()
        process.wait(15)
        log.close()
    lines = (tmp_path / "service.log").read_text().splitlines()
    assert any(line.startswith('{"time":') and '"/ready"' in line for line in lines)


DEPLOY_DOC = ROOT / "docs" / "deploy.md"


def test_the_deploy_guides_paths_are_the_ones_installed(tmp_path):
    sites = tmp_path / "etc/nginx/sites-available"
    sites.mkdir(parents=True)
    (sites / "default").write_text("")
    install(tmp_path)
    guide = DEPLOY_DOC.read_text()
    paths = set(
        re.findall(
            r"(/(?:etc/piagent|opt/piagent|var/lib/piagent|etc/systemd/system"
            r"|etc/nginx)(?:[\w./-]*\w)?)",
            guide,
        )
    )
    assert len(paths) > 10
    [state] = unit_directives()["StateDirectory"]
    for path in paths:
        staged = tmp_path / path.lstrip("/")
        if path == f"/var/lib/{state}":
            continue  # systemd creates it when the service starts
        if path.startswith("/opt/piagent/bin/"):
            continue  # the venv's programs: not made with --no-venv
        if f"sudo tee {path}" in guide:
            # a file the guide has the reader write, into a directory installed
            assert staged.parent.is_dir(), path
            continue
        assert staged.exists(), f"{path} is named in docs/deploy.md, not installed"


def settings_named(text: str) -> dict[str, str]:
    """`NAME=number` pairs the text shows for settings and unit directives."""
    return dict(re.findall(r"`([A-Za-z_]+)=(\d+(?:\.\d+)?)`", text))


def test_the_deploy_guide_and_shipped_files_agree_on_the_numbers():
    guide = DEPLOY_DOC.read_text()
    unit = unit_directives()
    site = (ROOT / "deploy/nginx/piagent.conf").read_text()
    read_timeout = re.search(r"proxy_read_timeout (\d+)s;", site)[1]
    # The guide gives nginx's wait in seconds, and no other value for it.
    assert re.search(rf"\b{read_timeout} s\b", guide)
    assert set(re.findall(r"proxy_read_timeout\D{0,3}(\d+)", guide)) <= {read_timeout}
    defaults = Settings()
    shipped = {
        "TimeoutStopSec": unit["TimeoutStopSec"][0],
        "LimitNOFILE": unit["LimitNOFILE"][0],
        "MODEL_TIMEOUT": f"{defaults.model_timeout:g}",
        "MAX_QUEUE_WAIT_SECONDS": f"{defaults.max_queue_wait_seconds:g}",
        "MAX_GENERATION_SECONDS": f"{defaults.max_generation_seconds:g}",
    }
    named = settings_named(guide)
    assert {"TimeoutStopSec", "MODEL_TIMEOUT"} <= set(named)
    for name, value in named.items():
        if name in shipped:
            assert value == shipped[name], f"docs/deploy.md: {name}={value}"
    assert int(read_timeout) > defaults.model_timeout
    assert int(read_timeout) > (
        defaults.max_queue_wait_seconds + defaults.max_generation_seconds
    )
    # nginx's body limit is piagent's, and says so in piagent's words.
    assert "client_max_body_size 64k;" in site and defaults.max_body_bytes == 64 * 1024
    assert f"request body is larger than {defaults.max_body_bytes} bytes" in site
    # nginx's upstream is where the installed settings make gunicorn listen.
    env_example = (ROOT / ".env.example").read_text()
    bind = re.search(r"^BIND=(.+)$", env_example, re.M)[1]
    assert f"server {bind};" in site
    assert "sudo make install" in guide
    makefile = (ROOT / "Makefile").read_text()
    assert "install:\n\tdeploy/install.sh" in makefile
    assert "uninstall:\n\tdeploy/uninstall.sh" in makefile
