"""`python -m piagent keys ...`: the operator's tools (see piagent/keytool.py)."""

from __future__ import annotations

import sys

from piagent.keytool import PROG, main


def run(argv: list[str]) -> int:
    if not argv or argv[0] != "keys":
        print(f"usage: {PROG} add NAME | list | revoke NAME", file=sys.stderr)
        return 2
    return main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
