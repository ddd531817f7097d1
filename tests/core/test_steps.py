"""Steps: @step and FunctionStep, signatures to units, output modes, class-based steps, timeout, retry."""

from __future__ import annotations

import asyncio
from typing import TypedDict

import pytest
from pydantic import BaseModel

from nanobrain import (
    DataUnit,
    FunctionStep,
    RetryPolicy,
    StepError,
    StepTimeout,
    StreamUnit,
    UnitTypeError,
    Workflow,
    current_context,
    step,
)
from nanobrain import Step as BaseStep


class Summary(BaseModel):
    title: str
    words: int


class Stats(TypedDict):
    total: int
    mean: float


def single(s: BaseStep) -> Workflow:
    """Wrap one step: every input from a workflow input, every output to a workflow output."""
    wf = Workflow(
        f"run_{s.name}",
        inputs={n: u.type for n, u in s.inputs.items()},
        outputs={n: u.type for n, u in s.outputs.items()},
        steps=[s],
    )
    for port in s.inputs:
        wf.link(f"inputs.{port}", f"{s.name}.{port}")
    for port in s.outputs:
        wf.link(f"{s.name}.{port}", f"outputs.{port}")
    return wf


# -- signatures --------------------------------------------------------------------------------


def test_decorator_builds_a_function_step_from_the_signature():
    @step
    def greet(name: str, punctuation: str = "!") -> str:
        """Say hello.

        Longer text that is not part of the description.
        """
        return f"Hello, {name}{punctuation}"

    assert isinstance(greet, FunctionStep)
    assert greet.name == "greet"
    assert greet.description == "Say hello."
    assert list(greet.inputs) == ["name", "punctuation"]
    assert greet.inputs["name"].type is str
    assert greet.required_inputs == ("name",)
    assert greet.inputs["punctuation"].default == "!"
    assert list(greet.outputs) == ["result"]
    assert greet.outputs["result"].type is str
    assert greet("Ada") == "Hello, Ada!", "the step stays callable as the plain function"


def test_decorator_with_options_and_constructor_are_equivalent():
    def add(a: int, b: int = 1) -> int:
        return a + b

    decorated = step(name="adder", outputs="total", timeout=2.0)(add)
    built = FunctionStep(add, "adder", outputs="total", timeout=2.0)
    for s in (decorated, built):
        assert s.name == "adder"
        assert list(s.outputs) == ["total"]
        assert s.outputs["total"].type is int
        assert s.timeout == 2.0
        assert s.required_inputs == ("a",)


def test_unannotated_function_accepts_any_value():
    @step
    def anything(x):
        return x

    assert anything.inputs["x"].type is None
    assert anything.outputs["result"].type is None


def test_function_without_return_value_has_no_outputs():
    @step
    def sink(x: int) -> None:
        pass

    assert sink.outputs == {}


def test_variadic_parameters_are_refused_with_the_step_name():
    def bad(*args):
        return args

    with pytest.raises(TypeError, match=r"'bad'.*'args'"):
        FunctionStep(bad)

    def worse(**kwargs):
        return kwargs

    with pytest.raises(TypeError, match=r"'kwargs'"):
        FunctionStep(worse)
    with pytest.raises(TypeError, match=r"callable"):
        FunctionStep(42)  # type: ignore[arg-type]


def test_step_options_are_checked():
    with pytest.raises(ValueError, match=r"'s'.*timeout"):
        FunctionStep(lambda: 1, "s", timeout=0)
    with pytest.raises(ValueError, match=r"'s'.*concurrency"):
        FunctionStep(lambda: 1, "s", concurrency=0)
    with pytest.raises(ValueError, match=r"attempts"):
        RetryPolicy(attempts=0)


# -- running, sync and async -------------------------------------------------------------------


async def test_sync_and_async_functions_run_as_steps():
    @step
    def double(x: int) -> int:
        return x * 2

    @step
    async def increment(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    assert await single(double).run(x=4) == {"result": 8}
    assert await single(increment).run(x=4) == {"result": 5}
    assert await double.process({"x": 3}) == {"result": 6}
    assert await increment.process({"x": 3}) == {"result": 4}


async def test_optional_input_uses_its_default_when_not_given():
    @step
    def greet(name: str, punctuation: str = "!") -> str:
        return f"Hello, {name}{punctuation}"

    wf = Workflow(
        "w",
        inputs={"name": str, "punctuation": DataUnit("punctuation", str, default="?")},
        outputs={"text": str},
        steps=[greet],
    )
    wf.link("inputs.name", "greet.name")
    wf.link("inputs.punctuation", "greet.punctuation")
    wf.link("greet.result", "outputs.text")
    assert await wf.run(name="Ada") == {"text": "Hello, Ada?"}
    assert await wf.run(name="Ada", punctuation=".") == {"text": "Hello, Ada."}

    only_name = Workflow("w2", inputs={"name": str}, outputs={"text": str}, steps=[greet])
    only_name.link("inputs.name", "greet.name")
    only_name.link("greet.result", "outputs.text")
    assert await only_name.run(name="Ada") == {"text": "Hello, Ada!"}


async def test_input_values_are_validated_against_the_annotation():
    @step
    def double(x: int) -> int:
        return x * 2

    wf = Workflow("w", inputs=["x"], steps=[double])
    wf.link("inputs.x", "double.x")
    with pytest.raises(UnitTypeError, match=r"'double.x' expects int, got str"):
        await wf.run(x="lots")
    with pytest.raises(UnitTypeError, match=r"'inputs.x' expects int, got str"):
        await single(double).run(x="lots")


async def test_return_value_is_validated_against_the_return_annotation():
    @step
    def lies(x: int) -> int:
        return "not an int"  # type: ignore[return-value]

    with pytest.raises(StepError) as info:
        await single(lies).run(x=1)
    assert isinstance(info.value.__cause__, UnitTypeError)
    assert "'lies.result'" in str(info.value.__cause__)


# -- outputs -----------------------------------------------------------------------------------


async def test_named_single_output():
    @step(outputs="summary")
    def summarize(text: str) -> str:
        return text[:5]

    assert list(summarize.outputs) == ["summary"]
    assert await single(summarize).run(text="Hello, world") == {"summary": "Hello"}


async def test_pydantic_model_return_gives_one_output_per_field():
    @step
    def summarize(text: str) -> Summary:
        return Summary(title=text.split()[0], words=len(text.split()))

    assert {n: u.type for n, u in summarize.outputs.items()} == {"title": str, "words": int}
    assert await single(summarize).run(text="three little words") == {"title": "three", "words": 3}


async def test_dict_return_with_listed_outputs_may_leave_one_out():
    @step(outputs=["quotient", "remainder", "warning"])
    def divide(a: int, b: int) -> dict:
        result = {"quotient": a // b, "remainder": a % b}
        if b > a:
            result["warning"] = "b > a"
        return result

    assert list(divide.outputs) == ["quotient", "remainder", "warning"]
    assert await single(divide).run(a=7, b=2) == {"quotient": 3, "remainder": 1}
    assert await single(divide).run(a=1, b=2) == {"quotient": 0, "remainder": 1, "warning": "b > a"}


async def test_dict_return_with_an_unknown_key_fails_naming_it():
    @step(outputs=["a"])
    def wrong() -> dict:
        return {"a": 1, "b": 2}

    wf = Workflow("w", outputs={"a": int}, steps=[wrong])
    wf.link("wrong.a", "outputs.a")
    with pytest.raises(StepError, match=r"unknown output 'b'"):
        await wf.run()


async def test_listed_outputs_need_a_mapping():
    @step(outputs=["a", "b"])
    def not_a_dict() -> int:
        return 1

    wf = Workflow("w", outputs={"a": int}, steps=[not_a_dict])
    wf.link("not_a_dict.a", "outputs.a")
    with pytest.raises(StepError, match=r"must return a mapping"):
        await wf.run()


async def test_typed_dict_return_gives_typed_outputs():
    @step
    def stats(values: list[float]) -> Stats:
        return {"total": int(sum(values)), "mean": sum(values) / len(values)}

    assert {n: u.type for n, u in stats.outputs.items()} == {"total": int, "mean": float}
    assert await single(stats).run(values=[1.0, 2.0, 6.0]) == {"total": 9, "mean": 3.0}


# -- class-based steps -------------------------------------------------------------------------


class WordCount(BaseStep):
    """Count words."""

    inputs = {"text": str}
    outputs = {"count": int, "longest": str}

    async def process(self, inputs):
        words = inputs["text"].split()
        return {"count": len(words), "longest": max(words, key=len)}


class LoudWordCount(WordCount):
    """Inherits its inputs and outputs."""

    async def process(self, inputs):
        result = await super().process(inputs)
        return {**result, "longest": result["longest"].upper()}


async def test_class_based_step_declares_units_as_class_attributes():
    counter = WordCount()
    assert counter.name == "word_count"
    assert counter.description == "Count words."
    assert {n: u.type for n, u in counter.inputs.items()} == {"text": str}
    assert {n: u.type for n, u in counter.outputs.items()} == {"count": int, "longest": str}
    assert await single(counter).run(text="a bb ccc") == {"count": 3, "longest": "ccc"}


async def test_class_based_step_subclass_inherits_declared_units():
    loud = LoudWordCount()
    assert list(loud.inputs) == ["text"]
    assert list(loud.outputs) == ["count", "longest"]
    assert await single(loud).run(text="a bb ccc") == {"count": 3, "longest": "CCC"}


async def test_class_based_step_constructor_arguments_override_class_attributes():
    class Echo(BaseStep):
        inputs = {"x": int}
        outputs = {"x": int}

        async def process(self, inputs):
            return dict(inputs)

    renamed = Echo("echo_text", inputs={"t": str}, outputs={"t": str})
    assert list(renamed.inputs) == ["t"]
    assert renamed.name == "echo_text"
    assert await single(renamed).run(t="hi") == {"t": "hi"}


async def test_unit_declarations_may_be_template_units():
    class Reader(BaseStep):
        inputs = {"items": StreamUnit("items", int, maxsize=4)}
        outputs = {"seen": DataUnit("seen", int)}

        async def process(self, inputs):
            return {"seen": inputs["items"]}

    reader = Reader()
    assert isinstance(reader.inputs["items"], StreamUnit)
    assert reader.inputs["items"].maxsize == 4
    assert reader.inputs["items"].name == "items"


async def test_step_without_process_says_so():
    with pytest.raises(NotImplementedError, match=r"'bare'"):
        await BaseStep("bare").process({})


def test_renamed_step_is_a_copy_under_another_name():
    @step
    def double(x: int) -> int:
        return x * 2

    twin = double.renamed("twice")
    assert twin.name == "twice"
    assert double.name == "double"
    assert twin(2) == 4


async def test_step_context_names_the_running_step():
    @step
    def who() -> str:
        context = current_context()
        assert context is not None
        return f"{context.step}@{context.path}"

    wf = Workflow("ctx", outputs={"who": str}, steps=[who])
    wf.link("who.result", "outputs.who")
    assert await wf.run() == {"who": "who@ctx/who"}
    assert current_context() is None


# -- timeout -----------------------------------------------------------------------------------


async def test_timeout_really_cancels_the_step():
    observed: list[str] = []

    @step(timeout=0.05)
    async def stuck(x: int) -> int:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            observed.append("cancelled")
            raise
        observed.append("finished")
        return x

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(StepError) as info:
        await single(stuck).run(x=1)
    assert loop.time() - started < 10, "the run must end at the timeout, not when the step would have"
    assert observed == ["cancelled"]
    timeout = info.value.__cause__
    assert isinstance(timeout, StepTimeout)
    assert isinstance(timeout, TimeoutError)
    assert timeout.step == "stuck"
    assert timeout.seconds == 0.05
    assert info.value.step == "stuck"
    assert "'stuck'" in str(info.value) and "0.05s" in str(info.value)


async def test_step_within_its_timeout_is_not_affected():
    @step(timeout=5)
    async def quick(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    assert await single(quick).run(x=1) == {"result": 2}


async def test_cancelled_error_from_outside_is_not_turned_into_a_timeout():
    started = asyncio.Event()

    @step(timeout=30)
    async def waits(x: int) -> int:
        started.set()
        await asyncio.sleep(30)
        return x

    run = asyncio.create_task(single(waits).run(x=1))
    await asyncio.wait_for(started.wait(), timeout=5)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run


# -- retry -------------------------------------------------------------------------------------


async def test_retry_policy_retries_then_succeeds():
    attempts: list[int] = []

    @step(retry=RetryPolicy(attempts=3, initial=0, jitter=0))
    async def flaky(x: int) -> int:
        attempts.append(x)
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return x * 10

    assert await single(flaky).run(x=2) == {"result": 20}
    assert attempts == [2, 2, 2]


async def test_retry_policy_gives_up_after_its_attempts():
    attempts: list[int] = []

    @step(retry=RetryPolicy(attempts=2, initial=0, jitter=0))
    def always(x: int) -> int:
        attempts.append(x)
        raise ConnectionError(f"attempt {len(attempts)}")

    with pytest.raises(StepError) as info:
        await single(always).run(x=1)
    assert len(attempts) == 2
    assert isinstance(info.value.__cause__, ConnectionError)
    assert str(info.value.__cause__) == "attempt 2"


async def test_non_retryable_exception_is_not_retried():
    attempts: list[int] = []

    @step(retry=RetryPolicy(attempts=5, initial=0, jitter=0, retry_on=(ConnectionError,)))
    def picky(x: int) -> int:
        attempts.append(x)
        raise ValueError("bad input, retrying will not help")

    with pytest.raises(StepError) as info:
        await single(picky).run(x=1)
    assert attempts == [1]
    assert isinstance(info.value.__cause__, ValueError)


async def test_each_retry_attempt_gets_its_own_timeout():
    attempts: list[int] = []

    @step(timeout=0.05, retry=RetryPolicy(attempts=3, initial=0, jitter=0))
    async def slow_then_fast(x: int) -> int:
        attempts.append(x)
        if len(attempts) == 1:
            await asyncio.sleep(30)
        return x

    assert await single(slow_then_fast).run(x=7) == {"result": 7}
    assert attempts == [7, 7]


async def test_a_blocking_step_still_times_out_and_says_it_was_abandoned() -> None:
    import time

    def blocking(x: int) -> int:
        time.sleep(2.0)
        return x

    workflow = Workflow.sequence(FunctionStep(blocking, timeout=0.05), name="w")
    started = time.perf_counter()
    with pytest.raises(StepError) as caught:
        await workflow.run(x=1)
    assert time.perf_counter() - started < 1.5  # the run did not wait for the 2 s blocking call
    timeout = caught.value.__cause__
    assert isinstance(timeout, StepTimeout) and not timeout.cancelled
    assert "abandoned" in str(timeout)
