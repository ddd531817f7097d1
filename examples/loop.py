"""A bounded loop: Newton's method refines a square root until it converges.

The back-edge (`improve.guess -> improve.guess`) is a conditional link with
`max_iterations`: the loop stops when the estimate converges, and a run that would go past the
bound fails with CycleLimitExceeded instead of spinning forever. `loop.yaml` is the same in YAML.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

import nanobrain as nb


class Guess(BaseModel):
    target: float
    estimate: float
    rounds: int = 0


@nb.step(outputs="guess")
def start(number: float) -> Guess:
    if number < 0:
        raise ValueError(f"cannot take the square root of a negative number ({number})")
    return Guess(target=number, estimate=max(number, 1.0))


@nb.step(outputs="guess")  # one output holding the whole model, not one per field
def improve(guess: Guess) -> Guess:
    estimate = (guess.estimate + guess.target / guess.estimate) / 2
    return Guess(target=guess.target, estimate=estimate, rounds=guess.rounds + 1)


def converged(guess: Guess) -> bool:
    return abs(guess.estimate * guess.estimate - guess.target) <= 1e-9 * max(guess.target, 1.0)


def not_converged(guess: Guess) -> bool:
    return not converged(guess)


def estimate_of(guess: Guess) -> float:
    return guess.estimate


def rounds_of(guess: Guess) -> int:
    return guess.rounds


def build(max_rounds: int = 100) -> nb.Workflow:
    workflow = nb.Workflow("loop", inputs={"number": float}, outputs={"root": float, "rounds": int})
    workflow.add(start)
    workflow.add(improve)
    workflow.link("inputs.number", "start.number")
    workflow.link("start.guess", "improve.guess")
    workflow.link("improve.guess", "improve.guess", when=not_converged, max_iterations=max_rounds)
    workflow.link("improve.guess", "outputs.root", when=converged, transform=estimate_of)
    workflow.link("improve.guess", "outputs.rounds", when=converged, transform=rounds_of)
    return workflow


if __name__ == "__main__":
    print(asyncio.run(build().run(number=2.0)))
