"""What a view says about itself for the OpenAPI document, kept on the view.

A view declares its request body, its answers and the error statuses it can
give, with the marshmallow schemas that already validate or describe them;
its docstring is the operation's summary (first line) and description. This
module only records; piagent/web/openapi.py, imported when /openapi.json is
first asked for, turns the records of every registered route into the
document, and a test fails if a route has none.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from marshmallow import Schema

View = TypeVar("View", bound=Callable[..., Any])
SchemaRef = type[Schema] | Schema
# A body schema may be read from the app's services (schemas with settings).
BodyRef = SchemaRef | Callable[[Any], Schema]

# Header names the document describes, by the name used in `Reply.headers`.
CONVERSATION_ID = "X-Conversation-Id"
RETRY_AFTER = "Retry-After"


@dataclass(frozen=True)
class Reply:
    """One documented answer of an operation.

    `schema` is the JSON body; `content` other media types, each an OpenAPI
    media object (a schema given as a marshmallow schema is converted too);
    `headers` names headers of the document's components.
    """

    description: str
    schema: SchemaRef | None = None
    content: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    headers: tuple[str, ...] = ()
    required_headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    tag: str
    summary: str
    description: str
    replies: Mapping[int, Reply]
    errors: tuple[int, ...]
    body: BodyRef | None
    path_schema: SchemaRef | None
    error_headers: tuple[str, ...]


ATTRIBUTE = "piagent_openapi"


def operation(
    *,
    tag: str,
    replies: Mapping[int, Reply],
    errors: tuple[int, ...] = (),
    body: BodyRef | None = None,
    path_schema: SchemaRef | None = None,
    error_headers: tuple[str, ...] = (),
) -> Callable[[View], View]:
    """Describe a view: its answers, its error statuses (described once, in
    the document's error table), its JSON body and its path parameters.

    A view with a body also answers 400, 413 and 415; a view that is not
    @public also 401 and 429: the document adds those by itself.
    `error_headers` go on every error answer (e.g. X-Conversation-Id).
    """

    def describe(view: View) -> View:
        doc = inspect.getdoc(view) or ""
        summary, _, description = doc.partition("\n")
        setattr(
            view,
            ATTRIBUTE,
            Operation(
                tag=tag,
                summary=summary.strip(),
                description=description.strip(),
                replies=dict(replies),
                errors=tuple(errors),
                body=body,
                path_schema=path_schema,
                error_headers=tuple(error_headers),
            ),
        )
        return view

    return describe


def event_stream(description: str, events: tuple[str, ...]) -> dict[str, Any]:
    """A stream's media object: text, with its events' schemas (components of
    the document) named in `x-events`, since OpenAPI 3.1 has no way to give a
    schema per event."""
    return {
        "schema": {"type": "string", "description": description},
        "x-events": [{"$ref": f"#/components/schemas/{name}"} for name in events],
    }


def described(view: Callable[..., Any] | None) -> Operation | None:
    return getattr(view, ATTRIBUTE, None)
