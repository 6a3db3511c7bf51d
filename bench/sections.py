"""Sections of RESULTS.md that outlive the runs that did not measure them.

Why: some figures need what not every machine has (a real model server), or
take long; their results are kept in RESULTS.md as named sections, which a
full run that could not (or did not) measure them leaves as they were, and a
run of just those figures (`--only ... --write-sections`) replaces without
touching the main table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BLOCK = re.compile(
    r"<!-- section: (?P<name>[\w-]+) -->\n.*?<!-- end of section: (?P=name) -->\n",
    re.S,
)


@dataclass(frozen=True)
class Section:
    """A named block of Markdown, its own `##` heading included."""

    name: str
    text: str

    def block(self) -> str:
        return (
            f"<!-- section: {self.name} -->\n{self.text.rstrip()}\n"
            f"<!-- end of section: {self.name} -->\n"
        )


def found(document: str) -> list[Section]:
    """The sections in a document, in order."""
    sections = []
    for match in _BLOCK.finditer(document):
        body = match.group(0).split("\n", 1)[1].rsplit("<!-- end of section:", 1)[0]
        sections.append(Section(match.group("name"), body))
    return sections


def merge(document: str, sections: list[Section]) -> str:
    """The document with each section replaced where it is, or appended."""
    for section in sections:
        block = section.block()
        pattern = re.compile(
            rf"<!-- section: {re.escape(section.name)} -->\n.*?"
            rf"<!-- end of section: {re.escape(section.name)} -->\n",
            re.S,
        )
        match = pattern.search(document)
        if match:
            document = document[: match.start()] + block + document[match.end() :]
        else:
            document = document.rstrip() + "\n\n" + block
    return document
