"""The generation runtime behind ``static_cache``: fixed shapes, one pre-allocated KV cache, two graphs.

Why this exists instead of ``model.generate(cache_implementation="static")``: measured on this CPU, that
path sizes the cache from each call's length, dynamo specializes the cache length into its guards, and a
longer generation recompiles both graphs (an 86 s spike). Here:

- one ``StaticCache`` of ``max_cache_len`` x ``batch_size`` is allocated eagerly (``early_initialization``)
  when the runtime is attached, so no call ever allocates or re-sizes it (a lazily allocated cache made
  its second use recompile the prefill);
- prompts are prefilled in chunks of exactly ``prefill_chunk`` tokens (the last chunk right-padded), so
  every prompt length up to the cache size runs through one prefill graph. Padding is exact, not an
  approximation: pad tokens sit after the real ones, causal masking keeps real tokens from seeing them,
  and the cache write pointer is rewound to the real length so decoding overwrites them;
- decoding feeds one token per row per step, so it is one decode graph;
- every input goes through persistent buffers (``copy_``), so strides and shapes never change and dynamo
  never sees a reason to recompile. The write pointer (``cumulative_length``) and positions are tensors,
  so their values are not guarded on;
- sliding-window layers (Mistral, Phi-3, Gemma 2/3, Qwen3's sliding layers) get a full-length cache layer
  like every other layer, and the window comes from the model's own mask (``config.sliding_window`` over
  absolute cache positions). transformers' ``StaticSlidingWindowLayer`` keeps a Python-int length of its
  own, which a rewind over padding does not reach (wrong tokens) and which dynamo guards on (a recompile
  every step); a full-length layer costs ``max_cache_len`` positions instead of the window's, and is
  exact by construction: the keys outside the window are in the cache but masked.

The runtime works eagerly too (``static_cache`` without ``torch_compile``). With ``torch_compile`` the
model's ``__call__`` is compiled in place and ``warm_up`` compiles both graphs before the first request.
"""

from __future__ import annotations

import gc
import logging
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from smash.errors import GenerationInputError, UnsupportedLayerTypesError
from smash.parallel import torch_threads
from smash.precompiled import Graphs

if TYPE_CHECKING:
    from transformers import StaticCache

log = logging.getLogger(__name__)

RUNTIME_ATTR = "_smash_generation_runtime"
AUTO_THREADS = 0

# generate() keywords the runtime accepts; anything else is refused by name rather than ignored.
_ACCEPTED = frozenset({"attention_mask", "pad_token_id", "use_cache", "return_dict_in_generate", "streamer"})

# Attention layer types (transformers' ``config.layer_types`` names) the runtime caches exactly. Others
# (chunked, linear or hybrid attention, shared-KV layers) are refused when the runtime is built.
SUPPORTED_LAYER_TYPES = ("full_attention", "sliding_attention")


@dataclass(frozen=True)
class RuntimeSpec:
    """What fixes the shapes of the graphs: change any of these and the graphs change."""

    max_cache_len: int
    batch_size: int
    prefill_chunk: int
    # Threads of the decode step (None: the process's; AUTO_THREADS: chosen by ``static_cache`` by
    # timing). Part of the graphs: inductor's C++ kernels and dynamo's guards specialize on it.
    decode_threads: int | None = None


@dataclass
class WarmupReport:
    """How long warm-up took and how many dynamo frames it compiled (0 when the graphs were cached)."""

    seconds: float
    frames_compiled: int


def compiled_frames() -> int:
    """Dynamo frames compiled so far in this process; the tests and benchmarks diff this number."""
    from torch._dynamo.utils import counters

    return int(counters["frames"]["ok"])


def attached_runtime(model: nn.Module) -> StaticGenerationRuntime | None:
    """The runtime ``static_cache`` attached to ``model``, if any."""
    runtime = model.__dict__.get(RUNTIME_ATTR)
    return runtime if isinstance(runtime, StaticGenerationRuntime) else None


def attach_runtime(model: nn.Module, spec: RuntimeSpec) -> StaticGenerationRuntime:
    """Give ``model`` a runtime; stored outside parameters/buffers so ``state_dict`` does not change."""
    runtime = StaticGenerationRuntime(model, spec)
    object.__setattr__(model, RUNTIME_ATTR, runtime)
    return runtime


def thread_candidates(process_threads: int) -> list[int]:
    """Thread counts worth timing for decode: powers of two below the process's count, and that count."""
    counts = {process_threads}
    count = 1
    while count < process_threads:
        counts.add(count)
        count *= 2
    return sorted(counts)


def cache_layer_types(config: Any) -> list[str]:
    """The cache layer type of each decoder layer, as transformers' ``StaticCache`` reads it from ``config``
    (``layer_types``, or ``sliding_window`` where a config has no ``layer_types``, as Mistral's)."""
    from transformers.cache_utils import get_layer_types_and_kwargs

    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    return list(get_layer_types_and_kwargs(text)[0])


def unsupported_layer_types(config: Any) -> list[str]:
    """The layer types of ``config`` the runtime cannot cache exactly, sorted; empty when it can."""
    return sorted(set(cache_layer_types(config)) - set(SUPPORTED_LAYER_TYPES))


def static_cache(config: Any, max_cache_len: int) -> StaticCache:
    """A transformers ``StaticCache`` whose every layer is a full-length ``StaticLayer`` (module docstring:
    sliding layers included), or ``UnsupportedLayerTypesError``."""
    from transformers import StaticCache
    from transformers.cache_utils import StaticLayer

    unsupported = unsupported_layer_types(config)
    if unsupported:
        raise UnsupportedLayerTypesError("static_cache", unsupported, SUPPORTED_LAYER_TYPES)
    cache = StaticCache(config=config, max_cache_len=max_cache_len)
    cache.layers = [StaticLayer(max_cache_len=max_cache_len) for _ in cache.layers]
    return cache


def _kv_layout(config: Any) -> tuple[int, int]:
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    heads = int(text.num_attention_heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
    return kv_heads, head_dim


def _compute_dtype(model: nn.Module) -> torch.dtype:
    getter = getattr(model, "get_input_embeddings", None)
    embeddings = getter() if callable(getter) else None
    weight = getattr(embeddings, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.is_floating_point():
        return weight.dtype
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.get_default_dtype())


def _device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


class StaticGenerationRuntime:
    """Greedy or sampled generation over a fixed-shape static cache. See the module docstring."""

    def __init__(self, model: nn.Module, spec: RuntimeSpec) -> None:
        self.model = model
        self.spec = spec
        self.device = _device(model)
        config: Any = model.config
        self.cache = static_cache(config, spec.max_cache_len)
        # The precompiled prefill/decode steps (smash.precompiled); None: call the model.
        self.graphs: Graphs | None = None
        kv_heads, head_dim = _kv_layout(config)
        self.cache.early_initialization(
            batch_size=spec.batch_size,
            num_heads=kv_heads,
            head_dim=head_dim,
            dtype=_compute_dtype(model),
            device=self.device,
        )
        batch, chunk = spec.batch_size, spec.prefill_chunk
        self._chunk_ids = self._buffer(batch, chunk)
        self._chunk_pos = self._buffer(1, chunk)
        self._keep = self._buffer(1)
        self._token = self._buffer(batch, 1)
        self._token_pos = self._buffer(1, 1)
        self._logits: torch.Tensor | None = None  # the last position's logits, (batch, vocab)
        self.last_warmup: WarmupReport | None = None

    def _buffer(self, *shape: int) -> torch.Tensor:
        return torch.zeros(shape, dtype=torch.long, device=self.device)

    # --- the two graphs -----------------------------------------------------------------------------

    def _set_length(self, length: int) -> None:
        for layer in self.cache.layers:
            pointer: torch.Tensor = layer.cumulative_length  # type: ignore[union-attr,assignment]
            pointer.fill_(length)

    def prefill(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Write the prompt into the cache from position 0; return logits of its last token (B, vocab),
        in the runtime's logits buffer (see ``decode``)."""
        length, chunk = input_ids.shape[1], self.spec.prefill_chunk
        self._check_fits(length)
        self._set_length(0)
        logits = torch.empty(0)
        for start in range(0, length, chunk):
            piece = input_ids[:, start : start + chunk]
            self._chunk_ids.zero_()
            self._chunk_ids[:, : piece.shape[1]].copy_(piece)
            torch.arange(start, start + chunk, out=self._chunk_pos[0])
            self._keep.fill_(piece.shape[1] - 1)
            logits = self._forward(self._chunk_ids, self._chunk_pos, self._keep)
        self._set_length(length)  # rewind over the padding of the last chunk
        return self._keep_last(logits)

    def decode(self, token: torch.Tensor, position: int) -> torch.Tensor:
        """Feed one token per row at ``position``; return next-token logits (B, vocab).

        The logits are the runtime's own buffer, overwritten by the next ``prefill`` or ``decode``:
        clone them to keep them.
        """
        self._check_fits(position + 1)
        self._token.copy_(token)
        self._token_pos.fill_(position)
        return self._keep_last(self._forward(self._token, self._token_pos, None))

    def _keep_last(self, logits: torch.Tensor) -> torch.Tensor:
        """Copy the last position's logits into one persistent buffer, so the step's own output (192 KiB
        for a 49k vocabulary) is freed at once, before anything else is allocated.

        Why: handed back to the generation loop, each step's output stayed alive while the next step
        allocated its own, and small allocations made in between (the loop's, a streamer's) split the
        freed block, so glibc took a fresh one from the top of its heap at every step: a compiled int8
        SmolLM2 grew by up to 570 MB over a 16..512-token sweep (benchmarks/compile_stability.py).
        """
        last = logits[:, -1, :]
        buffer = self._logits
        if buffer is None or buffer.shape != last.shape or buffer.dtype != last.dtype:
            buffer = self._logits = torch.empty(last.shape, dtype=last.dtype, device=last.device)
        return buffer.copy_(last)

    def _check_fits(self, positions: int) -> None:
        if positions > self.spec.max_cache_len:
            raise GenerationInputError(
                f"{positions} positions do not fit the static cache (max_cache_len "
                f"{self.spec.max_cache_len}); smash with a larger static_cache.max_cache_len."
            )

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        # One fixed autograd state whatever the caller's: grad and inference mode are part of the guards,
        # so a caller under inference_mode after a warm-up under no_grad would otherwise recompile.
        graph = "decode" if keep is None else "prefill"
        with torch.inference_mode(False), torch.no_grad(), self.threads(graph):
            return self._call_model(ids, positions, keep)

    @contextmanager
    def threads(self, graph: str) -> Iterator[None]:
        """Run ``graph`` ("prefill" or "decode") on the thread count the spec gives it.

        Why decode has its own: one decode step is ~200 small matrix-vector products, and with the
        process's threads sleeping between parallel regions (OMP_WAIT_POLICY=PASSIVE, which this project
        sets because spinning threads starved other work on shared machines) waking them costs more
        than a second core gains. Measured on SmolLM2-135M int8 on a 2-core CPU: 53 ms per step on 2
        threads, 35 ms on 1 (a profiled step; article_table.py prints each column's choice). The thread
        count is process-wide, so it is restored after every step; like the cache, this makes one
        runtime unsafe to drive from two Python threads at once.
        """
        with torch_threads(self.spec.decode_threads if graph == "decode" else None):
            yield

    def _call_model(self, ids: torch.Tensor, positions: torch.Tensor, keep: torch.Tensor | None) -> Any:
        if self.graphs is not None:
            try:
                return self._call_graph(self.graphs, ids, positions, keep)
            except RuntimeError as e:
                if not str(e).startswith("GuardManager check failed"):
                    raise
                # Guards are checked before anything runs, so nothing was written: use the in-place model.
                log.warning("precompiled graph refused its inputs (%s); using the in-place compiled model", e)
                self.graphs = None
        kwargs: dict[str, Any] = {"logits_to_keep": keep} if keep is not None else {}
        out = self.model(
            input_ids=ids, position_ids=positions, past_key_values=self.cache, use_cache=True, **kwargs
        )
        return out.logits

    def _call_graph(
        self, graphs: Graphs, ids: torch.Tensor, positions: torch.Tensor, keep: torch.Tensor | None
    ) -> torch.Tensor:
        if keep is None:
            return graphs.decode(self.model, ids, positions, self.cache)
        return graphs.prefill(self.model, ids, positions, self.cache, keep)

    def step_inputs(self, graph: str) -> tuple[Any, ...]:
        """The arguments the runtime calls ``graph`` ("prefill" or "decode") with: its persistent buffers."""
        if graph == "prefill":
            return (self.model, self._chunk_ids, self._chunk_pos, self.cache, self._keep)
        return (self.model, self._token, self._token_pos, self.cache)

    def probe(self, graphs: Graphs) -> tuple[torch.Tensor, torch.Tensor]:
        """Prefill-chunk and decode logits of ``graphs`` on a fixed input (overwrites the cache, as any
        request does), to compare precompiled graphs against the eager model before using them."""
        saved, self.graphs = self.graphs, graphs
        try:
            prompt = torch.zeros((self.spec.batch_size, 1), dtype=torch.long, device=self.device)
            first = self.prefill(prompt).clone()
            # A fixed next token, not the argmax: two near-equal top logits (SmolLM2 hqq 8-bit) gave
            # eager and compiled prefills different argmaxes, so different decode inputs, so a refusal.
            return first, self.decode(torch.ones_like(prompt), 1).clone()
        finally:
            self.graphs = saved

    def time_decode_threads(self, candidates: Sequence[int], *, steps: int = 9) -> dict[int, float]:
        """Median seconds of one decode step of the model as it is now, on each thread count.

        Run on the eager model, before compiling: matrix-vector kernels dominate a decode step eagerly
        and compiled alike, and one timing per count is cheap where one compile per count is not. The
        cache is written to, as any request does.
        """
        token = torch.zeros((self.spec.batch_size, 1), dtype=torch.long, device=self.device)
        timings: dict[int, float] = {}
        spec = self.spec
        try:
            for count in candidates:
                self.spec = replace(spec, decode_threads=count)
                samples = []
                for _ in range(steps + 1):  # the first step of a count is not counted
                    start = time.perf_counter()
                    self.decode(token, 0)
                    samples.append(time.perf_counter() - start)
                timings[count] = statistics.median(samples[1:])
        finally:
            self.spec = spec
        return timings

    # --- warm-up ------------------------------------------------------------------------------------

    def warm_up(self, *, rounds: int = 2) -> WarmupReport:
        """Run both graphs ``rounds`` times so compilation happens now, not on a user's request.

        Two rounds: the first compiles, the second proves the graphs' guards hold for a cache that has
        already been written to (the lazily allocated cache failed exactly that).
        """
        before, start = compiled_frames(), time.perf_counter()
        prompt = torch.zeros((self.spec.batch_size, min(2, self.spec.max_cache_len - 2)), dtype=torch.long)
        request = _Request(max_new_tokens=2, sampler=None, eos=set(), pad=0)
        with torch.no_grad():
            for _ in range(rounds):
                self._generate_ids(prompt.to(self.device), request)
        self.last_warmup = WarmupReport(time.perf_counter() - start, compiled_frames() - before)
        return self.last_warmup

    # --- generate -----------------------------------------------------------------------------------

    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        *,
        max_new_tokens: int | None = None,
        max_length: int | None = None,
        min_new_tokens: int | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_token_id: int | Sequence[int] | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """A subset of ``transformers`` ``generate`` over the static cache; returns prompt + new tokens.

        Unsupported options (beam search, ragged batches, logits processors, ...) are refused by name:
        use ``pruna_model.model.generate(...)`` for the full transformers API, at the price of the
        recompilations this runtime exists to avoid.
        """
        if input_ids is None:
            input_ids = kwargs.pop("inputs", None)  # transformers' name for the first argument
        input_ids = self._check_inputs(input_ids, kwargs)
        new_tokens = self._new_tokens(input_ids.shape[1], max_new_tokens, max_length)
        eos = self._eos_ids(eos_token_id)
        pad = kwargs.get("pad_token_id")
        if pad is None:
            pad = getattr(getattr(self.model, "generation_config", None), "pad_token_id", None)
        request = _Request(
            max_new_tokens=new_tokens,
            sampler=_Sampler(temperature, top_k, top_p) if do_sample else None,
            eos=eos,
            pad=0 if pad is None else int(pad),
            min_new_tokens=min_new_tokens or 0,
            streamer=kwargs.get("streamer"),
        )
        with torch.no_grad():
            return self._generate_ids(input_ids, request)

    def _generate_ids(self, input_ids: torch.Tensor, request: _Request) -> torch.Tensor:
        with _gc_paused():
            return self._generate_ids_unpaused(input_ids, request)

    def _generate_ids_unpaused(self, input_ids: torch.Tensor, request: _Request) -> torch.Tensor:
        rows, length = input_ids.shape
        if request.streamer is not None:
            request.streamer.put(input_ids.cpu())
        batch = torch.zeros((self.spec.batch_size, length), dtype=torch.long, device=self.device)
        batch[:rows].copy_(input_ids)
        logits = self.prefill(batch)
        finished = torch.zeros(rows, dtype=torch.bool, device=self.device)
        eos_tensor = torch.tensor(sorted(request.eos), dtype=torch.long, device=self.device)
        # Nothing a step allocates outlives it: the EOS ids masked before min_new_tokens are selected once,
        # and tokens are written into one pre-allocated row per request. Small tensors kept from each step
        # (a new EOS selection, or a list of per-step token tensors) landed in the heap block the previous
        # step's logits had just freed, so glibc took a new block for the next logits: a compiled int8
        # SmolLM2 grew 0.3-1.1 MB per step (benchmarks/compile_stability.py; see _keep_last, README).
        banned = eos_tensor[eos_tensor < logits.shape[-1]]
        shape = (rows, request.max_new_tokens)
        generated = torch.full(shape, request.pad, dtype=torch.long, device=self.device)
        produced = 0
        for step in range(request.max_new_tokens):
            if step < request.min_new_tokens and banned.numel():
                logits.index_fill_(-1, banned, float("-inf"))
            token = request.sampler(logits) if request.sampler is not None else logits.argmax(-1)
            column = generated[:, step]
            column.copy_(token[:rows]).masked_fill_(finished, request.pad)
            produced = step + 1
            if request.streamer is not None:
                request.streamer.put(column.cpu())
            finished |= torch.isin(column, eos_tensor)
            if step == request.max_new_tokens - 1 or bool(finished.all()):
                break
            logits = self.decode(token.unsqueeze(-1), length + step)
        if request.streamer is not None:
            request.streamer.end()
        return torch.cat([input_ids, generated[:, :produced]], dim=1)

    # --- input checks -------------------------------------------------------------------------------

    def _check_inputs(self, input_ids: torch.Tensor | None, kwargs: dict[str, Any]) -> torch.Tensor:
        unknown = sorted(set(kwargs) - _ACCEPTED)
        if unknown:
            raise GenerationInputError(
                f"option(s) {', '.join(unknown)} are not supported by the static-cache runtime; it supports "
                "greedy and sampled decoding (max_new_tokens, max_length, min_new_tokens, do_sample, "
                "temperature, top_k, top_p, eos_token_id, pad_token_id, streamer). Call "
                "pruna_model.model.generate(...) for the full transformers API."
            )
        if kwargs.get("return_dict_in_generate"):
            raise GenerationInputError(
                "return_dict_in_generate=True is not supported; the runtime returns ids."
            )
        if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2 or input_ids.shape[1] == 0:
            shape = (
                tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
            )
            raise GenerationInputError(f"input_ids must be a non-empty (batch, length) tensor, got {shape}.")
        if input_ids.shape[0] > self.spec.batch_size:
            raise GenerationInputError(
                f"batch of {input_ids.shape[0]} prompts exceeds the static cache's batch_size "
                f"{self.spec.batch_size}; smash with a larger static_cache.batch_size or split the batch."
            )
        mask = kwargs.get("attention_mask")
        if mask is not None and not bool(torch.as_tensor(mask).bool().all()):
            raise GenerationInputError(
                "padded prompts (an attention_mask with zeros) are not supported: prompts of one batch must "
                "have equal lengths. Generate them one at a time, or call pruna_model.model.generate(...)."
            )
        return input_ids.to(self.device)

    def _new_tokens(self, length: int, max_new_tokens: int | None, max_length: int | None) -> int:
        if max_new_tokens is None and max_length is not None:
            max_new_tokens = max_length - length
        if max_new_tokens is None:
            config = getattr(self.model, "generation_config", None)
            max_new_tokens = getattr(config, "max_new_tokens", None)
            if max_new_tokens is None:
                max_new_tokens = int(getattr(config, "max_length", None) or 20) - length
        if max_new_tokens < 1:
            raise GenerationInputError(
                f"nothing to generate: max_new_tokens={max_new_tokens} for a prompt of {length} tokens; "
                "pass max_new_tokens >= 1."
            )
        if length + max_new_tokens > self.spec.max_cache_len:
            raise GenerationInputError(
                f"a prompt of {length} tokens plus {max_new_tokens} new tokens needs "
                f"{length + max_new_tokens} cache positions, but static_cache.max_cache_len is "
                f"{self.spec.max_cache_len}; shorten the request or smash with a larger max_cache_len."
            )
        return max_new_tokens

    def _eos_ids(self, eos_token_id: int | Sequence[int] | None) -> set[int]:
        if eos_token_id is None:
            eos_token_id = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if eos_token_id is None:
            return set()
        return {int(eos_token_id)} if isinstance(eos_token_id, int) else {int(t) for t in eos_token_id}


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for one generation.

    A step allocates a few dozen short-lived Python objects, so the collector runs every few steps, and
    now and then a full collection walks every object of a process that imported torch and transformers
    (milliseconds: a latency spike in the middle of a stream). A generation creates no reference cycles
    worth collecting mid-stream; the collector runs again as soon as it ends.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@dataclass
class _Request:
    """One generate() call's decoding options, resolved."""

    max_new_tokens: int
    sampler: _Sampler | None
    eos: set[int]
    pad: int
    min_new_tokens: int = 0
    streamer: Any = None  # transformers' BaseStreamer protocol: put(tokens), end()


class _Sampler:
    """Temperature, top-k and top-p sampling on the last logits, eager (it is not part of the graphs)."""

    def __init__(self, temperature: float, top_k: int | None, top_p: float | None) -> None:
        if temperature <= 0:
            raise GenerationInputError(f"temperature must be > 0 when do_sample=True, got {temperature}.")
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        scores = logits.float() / self.temperature
        if self.top_k:
            kth = torch.topk(scores, min(self.top_k, scores.shape[-1]), dim=-1).values[..., -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if self.top_p is not None and self.top_p < 1.0:
            ordered, index = torch.sort(scores, descending=True, dim=-1)
            cumulative = ordered.softmax(-1).cumsum(-1)
            drop = cumulative - ordered.softmax(-1) > self.top_p
            scores = scores.masked_fill(drop.scatter(-1, index, drop), float("-inf"))
        return torch.multinomial(scores.softmax(-1), 1).squeeze(-1)
