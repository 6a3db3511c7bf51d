"""The clock tool: today's date, the time and the weekday in one time zone.

Home Assistant moved the time out of its system prompt into a tool so the
prompt stays the same from turn to turn and the model's prompt cache stays
warm (home-assistant/core#133687); this is that tool.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from piagent.tools.base import ToolConfigError, object_schema

NAME = "clock"
SETTINGS = ("timezone",)


class ClockTool:
    name = NAME
    parameters = object_schema({})

    def __init__(
        self,
        zone: tzinfo | None,
        now: Callable[[tzinfo | None], datetime] | None = None,
    ) -> None:
        """`zone` None: the machine's local time zone."""
        self._zone = zone
        self._now = now or _now
        where = str(zone) if zone is not None else "the local time zone"
        self.description = (
            f"The current date (with the year), time and weekday in {where}. "
            "Takes no arguments."
        )

    def run(self, arguments: dict[str, Any]) -> str:
        moment = self._now(self._zone)
        offset = moment.strftime("%z")
        return json.dumps(
            {
                "date": moment.strftime("%Y-%m-%d"),
                "time": moment.strftime("%H:%M:%S"),
                "weekday": moment.strftime("%A"),
                "timezone": str(self._zone) if self._zone else moment.tzname(),
                "utc_offset": f"{offset[:3]}:{offset[3:]}" if offset else "",
            }
        )


def _now(zone: tzinfo | None) -> datetime:
    return datetime.now(zone) if zone is not None else datetime.now().astimezone()


def build(settings: Mapping[str, list[str]], **_: Any) -> ClockTool:
    """`clock.timezone: Europe/Berlin` (an IANA name); without it, local time."""
    names = settings.get("timezone")
    if not names:
        return ClockTool(None)
    try:
        return ClockTool(ZoneInfo(names[-1]))
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolConfigError(
            f"clock.timezone: {names[-1]!r} is not a time zone; expected an IANA "
            "name such as Europe/Berlin"
        ) from None
