"""Check answers against the schemas of a server's own /openapi.json.

schemathesis holds every operation to the document, but it cannot read the
events inside a stream, nor reach answers that need a particular server (an
agent with tools): tests hand those to `conforms` instead.
"""

from __future__ import annotations

from typing import Any

import requests
from jsonschema import Draft202012Validator


class Document:
    """The OpenAPI document a server serves, as schema validators."""

    def __init__(self, server: Any) -> None:
        self._doc = requests.get(server.url + "/openapi.json", timeout=10).json()

    def conforms(self, schema: str, value: Any) -> None:
        """Raise jsonschema's ValidationError unless `value` is a `schema`."""
        root = {
            "$ref": f"#/components/schemas/{schema}",
            "components": self._doc["components"],
        }
        Draft202012Validator(root).validate(value)
