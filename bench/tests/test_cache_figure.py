"""The prompt-cache figures' bookkeeping: sections kept, a missing model skipped.

No model and no timing here: what a run writes, and what it says when the real
model server is not built.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.conversation import QUESTIONS, TurnResult, interleaved, single, summarize
from bench.figures_cache import cross_check, real_model
from bench.harness import QUICK, Bench
from bench.results import write_results_md, write_sections
from bench.sections import Section, found, merge


def test_thirty_scripted_turns_one_or_three_conversations():
    assert len(QUESTIONS) == 30 and len(set(QUESTIONS)) == 30
    assert list(single("x").values()) == [QUESTIONS]
    three = interleaved("x")
    assert sorted(q for turns in three.values() for q in turns) == sorted(QUESTIONS)
    assert [len(turns) for turns in three.values()] == [10, 10, 10]


def test_merge_replaces_a_section_in_place_and_appends_new_ones():
    old = Section("a", "## A\n\nold\n").block()
    document = f"# Title\n\n{old}\ntail\n"
    merged = merge(document, [Section("a", "## A\n\nnew"), Section("b", "## B")])
    assert "new" in merged and "old" not in merged
    assert merged.index("## A") < merged.index("tail") < merged.index("## B")
    assert [s.name for s in found(merged)] == ["a", "b"]
    assert merge(merged, [Section("a", "## A\n\nnew")]) == merged


def test_a_full_run_keeps_sections_it_did_not_measure(tmp_path: Path):
    path = tmp_path / "RESULTS.md"
    meta = {"date": "d", "command": "c", "mode": "full", "runs": 1, "server": "s"}
    write_sections(path, [Section("prompt-cache-real", "## Real\n\nkept")])
    write_results_md(
        path, [], meta, {"cpu": "x"}, [Section("prompt-cache-fake", "## F")]
    )
    text = path.read_text()
    assert text.startswith("# piagent benchmark results")
    assert "kept" in text and "## F" in text
    write_sections(path, [Section("prompt-cache-real", "## Real\n\nnewer")])
    again = path.read_text()
    assert "newer" in again and "kept" not in again
    assert again.replace("newer", "kept") == text


def test_real_model_figure_is_skipped_with_a_clear_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("PIAGENT_CACHE_DIR", str(tmp_path))
    bench = Bench(root=tmp_path, plan=QUICK, log_dir=tmp_path, fake=None)  # type: ignore[arg-type]
    assert real_model(bench) == []
    [warning] = bench.warnings
    assert warning.startswith("figure realmodel skipped: no llama-server under")
    assert "make llama-server" in warning
    assert bench.sections == []


def turn(n: int, ttft: float, prompt: int, cached: int, history: int = 0):
    return TurnResult("c", n, ttft, prompt, cached, 48, history)


def test_summary_splits_the_first_five_turns_from_the_rest():
    turns = [turn(n, 0.1 * n, 100, 100 - n, n) for n in range(1, 11)]
    summary = summarize(turns)
    assert summary.evaluated_mean == pytest.approx(5.5)
    assert summary.evaluated_worst == 10
    assert summary.ttft_p50_first5 == pytest.approx(0.3)
    assert summary.ttft_p50_after5 == pytest.approx(0.8)
    assert summary.history_mean == pytest.approx(5.5)


def test_a_server_that_does_not_report_its_cache_cannot_be_summarized():
    with pytest.raises(RuntimeError, match="did not report its prompt cache"):
        summarize([TurnResult("c", 1, 0.1, 10, None, 1, 0)])


def test_cross_check_counts_turns_whose_log_line_agrees():
    results = {
        ("default", "one"): [turn(1, 0.1, 30, 0), turn(2, 0.1, 40, 30)],
        ("ideal", "one"): [turn(1, 0.1, 30, 0)],
    }
    assert cross_check(results, [[30, 10], [29]]) == (2, 3)
