"""One result row per figure, and how rows become Markdown and JSON.

Why a row holds both sides: a number from a shared, noisy 2-core VM only means
something next to the same load sent straight to the fake Ollama (the limit),
measured in the runs interleaved with it. ``checked`` is the value the target
applies to, which for "added over the limit" rows is piagent minus limit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.sections import Section, found, merge

UNITS: dict[str, Callable[[float], str]] = {
    "ms": lambda v: f"{v:.3g} ms" if abs(v) < 100 else f"{v:,.0f} ms",
    "µs": lambda v: f"{v:.3g} µs" if abs(v) < 100 else f"{v:,.0f} µs",
    "s": lambda v: f"{v:.3g} s",
    "req/s": lambda v: f"{v:,.0f} req/s",
    "MB": lambda v: f"{v:.1f} MB",
    "KB": lambda v: f"{v:.1f} KB",
    "count": lambda v: f"{v:g}",
    "×": lambda v: f"{v:.2f}×",
}


def fmt(value: float | None, unit: str, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    text = UNITS.get(unit, lambda v: f"{v:.3g} {unit}")(value)
    return f"+{text}" if signed and value >= 0 else text


@dataclass
class Row:
    """One line of the results table."""

    key: str
    figure: str
    label: str
    unit: str
    target: str
    measured: float | None = None
    limit: float | None = None
    checked: float | None = None
    checked_unit: str = ""
    checked_signed: bool = False
    passed: bool | None = None
    runs: dict[str, list[float]] = field(default_factory=dict)
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.measured is None or not self.limit:
            return None
        if math.isnan(self.measured) or math.isnan(self.limit):
            return None
        return self.measured / self.limit

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        return _no_nan(data)


def _no_nan(value: Any) -> Any:
    """NaN (a run that measured nothing) as null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _no_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_no_nan(item) for item in value]
    return value


def verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "**FAIL**", None: "n/a"}[passed]


def markdown_table(rows: list[Row]) -> str:
    """The results as one Markdown table (notes as numbered footnotes)."""
    lines = [
        "| figure | piagent | limit | ratio | checked | target | result |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    notes: list[str] = []
    for row in rows:
        label = row.label
        if row.note:
            notes.append(row.note)
            label += f" [{len(notes)}]"
        ratio = fmt(row.ratio, "×")
        checked_unit = row.checked_unit or row.unit
        checked = fmt(row.checked, checked_unit, row.checked_signed)
        cells = [
            label,
            fmt(row.measured, row.unit),
            fmt(row.limit, row.unit),
            ratio,
            checked,
            row.target,
            verdict(row.passed),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if notes:
        lines.append("")
        lines.extend(f"{i}. {note}" for i, note in enumerate(notes, 1))
    return "\n".join(lines)


def write_json(path: Path, rows: list[Row], meta: dict[str, Any]) -> None:
    data = {"meta": meta, "rows": [row.as_json() for row in rows]}
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_results_md(
    path: Path,
    rows: list[Row],
    meta: dict[str, Any],
    machine: dict[str, str],
    sections: list[Section] = (),  # type: ignore[assignment]
) -> None:
    """RESULTS.md: date, machine, how it was run, the table, what it means;
    then the kept sections (bench.sections), with this run's replacing theirs."""
    summary = (
        f"{sum(r.passed is True for r in rows)} PASS, "
        f"{sum(r.passed is False for r in rows)} FAIL, "
        f"{sum(r.passed is None for r in rows)} not measured"
    )
    lines = [
        "# piagent benchmark results",
        "",
        f"Date: {meta['date']}  ",
        f"Command: `{meta['command']}` ({meta['mode']}, {meta['runs']} runs per side, "
        "interleaved piagent/limit)  ",
        f"Server: {meta['server']}  ",
        f"Result: {summary}",
        "",
        "## Machine",
        "",
    ]
    lines += [f"- {name}: {value}" for name, value in machine.items()]
    lines += [
        "",
        "## Settings",
        "",
        "gunicorn.conf.py's and piagent's defaults, except (the generation queue "
        "and rate limits lifted, or a load test would mostly measure 503s and "
        "429s; see bench/README.md):",
        "",
    ]
    lines += [
        f"- `{name}={value}`" for name, value in meta.get("environment", {}).items()
    ]
    lines += [
        "",
        "## Figures",
        "",
        "*piagent* is the median over runs through gunicorn + piagent (one gevent "
        "worker) to the fake Ollama; *limit* is the median over the same load sent "
        "straight to the fake Ollama; *ratio* is piagent ÷ limit; *checked* is the "
        "value the target applies to (piagent − limit for the 'added' rows). CPU is "
        "user+system time of gunicorn's process tree (master + worker) over the "
        "measured window; RSS is summed over that tree, sampled every 50 ms. For "
        "CPU rows the limit column is the fake Ollama's own CPU for the same work.",
        "",
        markdown_table(rows),
        "",
    ]
    if meta.get("warnings"):
        lines += ["## Warnings", ""]
        lines += [f"- {warning}" for warning in meta["warnings"]]
        lines.append("")
    lines += [
        "## Reproduce",
        "",
        "```",
        "make bench                               # full, ~10 min",
        ".venv/bin/python -m bench.run            # the same, once the venv exists",
        ".venv/bin/python -m bench.run --quick    # ~3 min",
        ".venv/bin/python -m bench.run --only gaps,disconnect",
        "```",
        "",
        "See bench/README.md for the fake Ollama's request scheme, each figure's "
        "method, and where piagent's time goes (profiles).",
        "",
    ]
    kept = found(path.read_text()) if path.exists() else []
    path.write_text(merge(merge("\n".join(lines), kept), list(sections)))


def write_sections(path: Path, sections: list[Section]) -> None:
    """Replace (or add) only these sections of RESULTS.md; the rest stays."""
    path.write_text(merge(path.read_text() if path.exists() else "", sections))
