"""The chat quality benchmark asks the CLI and the raw model the same questions and keeps every answer
(it checks the report's shape and the keyword check, never how many answers are right)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.benchmarks.conftest import BENCHMARKS, LOCAL_MODEL, local_model_available
from tests.conftest import require

_spec = importlib.util.spec_from_file_location("benchmark_chat_quality", BENCHMARKS / "chat_quality.py")
assert _spec is not None and _spec.loader is not None
chat_quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(chat_quality)
QUESTIONS, QUICK, correct = chat_quality.QUESTIONS, chat_quality.QUICK, chat_quality.correct


def test_the_keyword_check_wants_a_whole_word() -> None:
    assert correct("The capital of France is Paris.", ("paris",))
    assert correct("It has 8 legs", ("eight", "8"))
    assert not correct("It has 18 legs", ("eight", "8"))
    assert not correct("Parisian food", ("paris",))
    assert correct("Plants take in CO2.", ("carbon dioxide", "co2"))
    assert len(QUESTIONS) >= 15 and all(keywords for _, keywords in QUESTIONS)


@pytest.mark.slow
def test_quick_run_reports_both_shares_and_every_answer(tmp_path: Path) -> None:
    require(local_model_available(), LOCAL_MODEL)
    output = tmp_path / "chat_quality.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "chat_quality.py"), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    figure = json.loads(output.read_text())["benchmarks"]["correct"]
    answers = figure["details"]["answers"]
    assert [a["question"] for a in answers] == [q for q, _ in QUESTIONS[:QUICK]]
    for answer in answers:
        assert answer["chat"].strip() and answer["raw"].strip(), answer
        assert answer["chat_correct"] == correct(answer["chat"], tuple(answer["keywords"]))
        assert answer["raw_correct"] == correct(answer["raw"], tuple(answer["keywords"]))
    assert figure["value_median"] == sum(a["chat_correct"] for a in answers) / len(answers)
    assert figure["baseline_median"] == sum(a["raw_correct"] for a in answers) / len(answers)
    assert figure["higher_is_better"] and figure["target"] == 1.0
    assert "\ncorrect " in done.stdout and "chat " in done.stdout
