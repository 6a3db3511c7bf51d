"""`python -m piagent keys add NAME | list | revoke NAME`: the keys file's tool.

Reads API_KEYS_FILE from the same settings as the server (the environment,
then `.env`, or the file given with --env-file). `add` prints a new key once
and keeps only its SHA-256; `revoke` rewrites the file atomically. A running
server picks the change up on `systemctl reload piagent`. No app is built and
no model server is asked: the tool works while the server is down or refuses
to start for want of a key. Errors are one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import os
import secrets
import stat
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from piagent.keys import (
    NAME_RULE,
    ApiKeys,
    KeyLine,
    digest_of,
    env_keys,
    is_owner_name,
    read_keys_file,
)
from piagent.settings import Settings, SettingsError

PROG = "python -m piagent keys"
RELOAD = "reload piagent to use the change: sudo systemctl reload piagent"


class ToolError(Exception):
    """A one-line refusal for stderr; the tool exits with status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.env_file is not None and not os.path.isfile(args.env_file):
            raise ToolError(f"--env-file {args.env_file}: no such file")
        settings = Settings.from_env(env_file=args.env_file or ".env")
        if args.command == "list":
            return list_owners(settings)
        path = _keys_file(settings)
        if args.command == "add":
            return add(path, args.name)
        return revoke(path, args.name, settings)
    except SettingsError as exc:
        return _fail(f"configuration error: {exc}")
    except ToolError as exc:
        return _fail(str(exc))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Manage the API keys file (API_KEYS_FILE) of piagent.",
    )
    parser.add_argument(
        "--env-file",
        metavar="FILE",
        help="settings file to read besides the environment (default: ./.env; "
        "on an installed Pi: /etc/piagent/piagent.env)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_command = commands.add_parser(
        "add", help="make a key for NAME, print it once, store only its hash"
    )
    add_command.add_argument("name", metavar="NAME")
    commands.add_parser("list", help="show each owner and how many keys it has")
    revoke_command = commands.add_parser("revoke", help="remove every key of NAME")
    revoke_command.add_argument("name", metavar="NAME")
    return parser


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2


def _keys_file(settings: Settings) -> str:
    path = settings.api_keys_file.strip()
    if not path:
        raise ToolError(
            "API_KEYS_FILE is not set: name the keys file in the settings first "
            "(e.g. API_KEYS_FILE=/etc/piagent/keys), in the environment or the "
            "file given with --env-file"
        )
    return os.path.realpath(path)


def _check_name(name: str) -> None:
    if not is_owner_name(name):
        # Not repeated: a key typed where the name goes must not be echoed.
        raise ToolError(f"NAME is not a name: expected {NAME_RULE}")


def _lines(path: str) -> tuple[str, list[KeyLine]]:
    found = read_keys_file(path)
    return found.text, found.lines


def add(path: str, name: str) -> int:
    """Append `NAME sha256:<hex>` of a new key and print the key, once."""
    _check_name(name)
    exists = os.path.exists(path)
    text, lines = _lines(path) if exists else ("", [])
    key = secrets.token_urlsafe(32)
    entry = f"{name} sha256:{digest_of(key).hex()}\n"
    if text and not text.endswith("\n"):
        entry = "\n" + entry
    try:
        # O_CREAT's 600 is only used for a new file; an existing one keeps its
        # mode and owner, as appending does not touch them.
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(descriptor, "a", encoding="utf-8") as keys_file:
            keys_file.write(entry)
            keys_file.flush()
            os.fsync(keys_file.fileno())
    except OSError as exc:
        raise ToolError(f"cannot write {path}: {exc.strerror}") from None
    print(key)
    count = sum(line.owner == name for line in lines) + 1
    print(
        f"added a key for {name} to {path} ({name} has {_keys(count)} now); it is "
        f"shown only this once. {RELOAD[0].upper()}{RELOAD[1:]}",
        file=sys.stderr,
    )
    if not exists:
        print(
            f"created {path} with mode 600: the service must be able to read it "
            "(an installed Pi: sudo chgrp piagent FILE && sudo chmod 640 FILE)",
            file=sys.stderr,
        )
    return 0


def list_owners(settings: Settings) -> int:
    """Each owner and its number of keys, API_KEYS' marked as such."""
    from_env = ApiKeys.of(env_keys(settings)).counts()
    path = settings.api_keys_file.strip()
    from_file = ApiKeys.of(_lines(path)[1]).counts() if path else {}
    if not path and not from_env:
        raise ToolError("no API keys are set (API_KEYS, API_KEYS_FILE)")
    rows = [(name, count, "") for name, count in from_file.items()]
    rows += [(name, count, "  (API_KEYS)") for name, count in from_env.items()]
    width = max((len(name) for name, _, _ in rows), default=0)
    for name, count, where in sorted(rows):
        print(f"{name:<{width}}  {_keys(count)}{where}")
    if not rows:
        print(f"no keys in {path}", file=sys.stderr)
    return 0


def revoke(path: str, name: str, settings: Settings) -> int:
    """Remove every line of NAME's keys, atomically; comments stay."""
    _check_name(name)
    text, lines = _lines(path)
    doomed = {line.number for line in lines if line.owner == name}
    if not doomed:
        if any(line.owner == name for line in env_keys(settings)):
            raise ToolError(f"{name}'s keys are in API_KEYS, not in {path}")
        raise ToolError(f"no keys of {name!r} in {path} (see: {PROG} list)")
    if len(doomed) == len(lines):
        raise ToolError(
            f"{name} has the last keys in {path}, and piagent refuses a keys file "
            "without keys: add another owner's key first"
        )
    kept = [
        line
        for number, line in enumerate(text.splitlines(keepends=True), 1)
        if number not in doomed
    ]
    _replace(path, "".join(kept))
    print(
        f"revoked {_keys(len(doomed))} of {name} in {path}; {RELOAD}",
        file=sys.stderr,
    )
    return 0


def _replace(path: str, text: str) -> None:
    """Write a temporary file beside `path`, with its mode and owner, then
    rename it over `path`: a reader sees the old file or the new, never half."""
    old = os.stat(path)
    directory = os.path.dirname(path)
    try:
        descriptor, temporary = tempfile.mkstemp(
            prefix=".keys-", dir=directory, text=True
        )
    except OSError as exc:
        raise ToolError(f"cannot write beside {path}: {exc.strerror}") from None
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as new:
            new.write(text)
            new.flush()
            os.fchmod(new.fileno(), stat.S_IMODE(old.st_mode))
            if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                os.fchown(new.fileno(), old.st_uid, old.st_gid)
            os.fsync(new.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise ToolError(
            f"cannot rewrite {path} with its owner and mode kept: {exc.strerror} "
            "(run the tool as the file's owner or as root)"
        ) from None
    try:
        directory_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)


def _keys(count: int) -> str:
    return f"{count} key" if count == 1 else f"{count} keys"
