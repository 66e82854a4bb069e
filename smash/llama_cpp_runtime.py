"""A GGUF model run by llama.cpp (llama-cpp-python), shaped like a transformers causal LM.

``LlamaCppModel`` is an ``nn.Module`` without tensors of its own: the weights live in the GGUF file, which
llama.cpp maps. Its ``forward`` returns logits for every position (``logits_all``), so the evaluation's
teacher-forced quality path works; a ``past_key_values`` object stands for llama.cpp's own KV cache (the
object is returned unchanged and remembers its tokens), so a transformers-style decode loop works too.
``generate`` follows transformers' contract: greedy or sampled (temperature, top-k, top-p, with torch's
random generator), ``max_new_tokens``/``min_new_tokens``, end-of-sequence tokens, a streamer, and it
returns the prompt followed by the new tokens, rows right-padded with the pad token.

llama.cpp keeps one sequence in its KV cache: a decode step (of ``generate``, or of a ``forward`` given the
``past_key_values`` it returned) evaluates one token; any other call evaluates its sequence whole.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from smash.errors import GenerationInputError, LlamaCppError

_GENERATE_OPTIONS = frozenset(
    {
        "attention_mask",
        "max_new_tokens",
        "min_new_tokens",
        "max_length",
        "do_sample",
        "temperature",
        "top_k",
        "top_p",
        "eos_token_id",
        "pad_token_id",
        "bos_token_id",
        "streamer",
        "use_cache",
        "generation_config",
    }
)


def load_llama(path: Path, *, n_threads: int, n_ctx: int) -> Any:
    """A ``llama_cpp.Llama`` over ``path`` with logits kept for every evaluated position."""
    import llama_cpp

    try:
        return llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=min(512, n_ctx),
            n_threads=n_threads,
            n_threads_batch=n_threads,
            logits_all=True,
            verbose=False,
        )
    except ValueError as e:  # llama-cpp-python raises ValueError when llama.cpp refuses the file
        raise LlamaCppError(
            "load", str(path), "Re-save the model, or check the GGUF file is complete."
        ) from e


class LlamaCppModel(nn.Module):
    """A transformers-like causal LM whose forward and generate run in llama.cpp."""

    def __init__(
        self, gguf_path: Path, config: Any, generation_config: Any, *, n_threads: int, n_ctx: int
    ) -> None:
        super().__init__()
        self.config = config
        self.generation_config = generation_config
        self.gguf_path = Path(gguf_path)
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self.llama = load_llama(self.gguf_path, n_threads=n_threads, n_ctx=n_ctx)
        self._vocab = int(self.llama.n_vocab())
        self._head = nn.Identity()  # the output head lives in llama.cpp; this says there is one
        self._sequences: weakref.WeakKeyDictionary[Any, list[int]] = weakref.WeakKeyDictionary()

    def get_output_embeddings(self) -> nn.Module:
        return self._head

    def weight_bytes(self) -> int:
        """Bytes of the model's tensors as llama.cpp holds them (quantized blocks included)."""
        import llama_cpp

        return int(llama_cpp.llama_model_size(self.llama.model))

    # --- evaluation -------------------------------------------------------------------------------

    def logits(self, tokens: Sequence[int], *, reuse: int = 0, last_only: bool = False) -> np.ndarray:
        """Float32 logits of every position of ``tokens`` (or of the last one: shape (1, vocab)).

        ``reuse``: how many leading tokens the caller knows this model evaluated last (a decode step: all
        but one); they are kept in llama.cpp's KV cache when it still holds them. A new sequence passes 0
        and is evaluated whole, as transformers would, so timing a repeated prompt measures a real prefill.
        ``last_only`` skips the output head on the other positions (llama.cpp computes only what it keeps).
        """
        if not tokens:
            raise GenerationInputError("llama.cpp needs at least one token per sequence")
        if len(tokens) > self.n_ctx:
            raise GenerationInputError(
                f"{len(tokens)} tokens exceed the llama.cpp context of {self.n_ctx}; smash with a larger "
                "llama_cpp.n_ctx or pass fewer tokens"
            )
        llm = self.llama
        keep = min(reuse, llm.n_tokens, len(tokens) - 1)
        if keep and not np.array_equal(llm.input_ids[:keep], np.asarray(tokens[:keep], dtype=np.intc)):
            keep = 0
        llm.n_tokens = keep
        # pinned llama-cpp-python 0.3.36: `_logits_all` is what `eval` reads to keep every position's logits
        llm._logits_all = not last_only
        llm.eval(list(tokens[keep:]))
        if not last_only:
            return llm.scores[: len(tokens)]
        import llama_cpp

        row = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        return np.ctypeslib.as_array(row, shape=(1, self._vocab))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        past_key_values: Any = None,
        logits_to_keep: int = 0,
        **_: Any,
    ) -> Any:
        """Logits of every position (of the last only with ``logits_to_keep=1``, as transformers'); with
        ``past_key_values``, the sequence continues the one it holds."""
        last_only = logits_to_keep == 1
        if past_key_values is not None:
            if input_ids.shape[0] != 1:
                raise GenerationInputError("llama.cpp continues one sequence at a time: pass a batch of one")
            prior = self._sequences.get(past_key_values)
            if prior is None:
                _check_empty(past_key_values)
                prior = []
            new = [int(t) for t in input_ids[0].tolist()]
            full = prior + new
            scores = self.logits(full, reuse=len(prior), last_only=last_only)
            logits = torch.from_numpy((scores if last_only else scores[len(prior) :]).copy())[None]
            self._sequences[past_key_values] = full
            return _output(logits, past_key_values)
        if last_only and input_ids.shape[0] == 1 and attention_mask is None:
            scores = self.logits([int(t) for t in input_ids[0].tolist()], last_only=True)
            return _output(torch.from_numpy(scores.copy())[None], None)
        rows = [
            self._row_logits(input_ids[i], _row_mask(attention_mask, i)) for i in range(input_ids.shape[0])
        ]
        logits = torch.stack(rows)
        return _output(logits[:, -logits_to_keep:] if logits_to_keep else logits, None)

    def _row_logits(self, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        keep = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
        out = torch.zeros((ids.shape[0], self._vocab), dtype=torch.float32)
        out[keep] = torch.from_numpy(self.logits([int(t) for t in ids[keep].tolist()]).copy())
        return out

    # --- generation -------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        unknown = set(kwargs) - _GENERATE_OPTIONS
        if unknown or input_ids is None:
            raise GenerationInputError(
                f"llama.cpp generate takes input_ids and {', '.join(sorted(_GENERATE_OPTIONS))}; got "
                f"{', '.join(sorted(unknown)) or 'no input_ids'}"
            )
        options = _options(self.generation_config, input_ids.shape[1], kwargs)
        streamer = kwargs.get("streamer")
        if streamer is not None and input_ids.shape[0] != 1:
            raise GenerationInputError("a streamer takes one sequence: pass a batch of one")
        mask = kwargs.get("attention_mask")
        rows = []
        for i in range(input_ids.shape[0]):
            row_mask = _row_mask(mask, i)
            prompt = input_ids[i] if row_mask is None else input_ids[i][row_mask.bool()]
            if streamer is not None:
                streamer.put(input_ids[i : i + 1].cpu())
            new = self._generate_row([int(t) for t in prompt.tolist()], options, streamer)
            rows.append([int(t) for t in input_ids[i].tolist()] + new)
        if streamer is not None:
            streamer.end()
        width = max(len(r) for r in rows)
        pad = options["pad"]
        return torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)

    def _generate_row(self, prompt: list[int], options: dict[str, Any], streamer: Any) -> list[int]:
        tokens = list(prompt)
        new: list[int] = []
        while len(new) < options["max_new"]:
            scores = self.logits(tokens, reuse=len(tokens) - 1 if new else 0, last_only=True)
            logits = torch.from_numpy(scores[-1].copy())
            if len(new) < options["min_new"] and options["eos"]:
                logits[list(options["eos"])] = float("-inf")
            token = _sample(logits, options) if options["sample"] else int(torch.argmax(logits))
            new.append(token)
            tokens.append(token)
            if streamer is not None:
                streamer.put(torch.tensor([token]))
            if token in options["eos"]:
                break
        return new


def _output(logits: torch.Tensor, cache: Any) -> Any:
    """transformers' causal-LM output; its cache field is ``cache`` from 5.24, ``past_key_values`` before."""
    from dataclasses import fields

    from transformers.modeling_outputs import CausalLMOutputWithPast

    names = {f.name for f in fields(CausalLMOutputWithPast)}
    key = "cache" if "cache" in names else "past_key_values"
    return CausalLMOutputWithPast(logits=logits, **({key: cache} if cache is not None else {}))


def _check_empty(cache: Any) -> None:
    """A cache this model has not filled must be empty: its keys and values mean nothing to llama.cpp."""
    length = getattr(cache, "get_seq_length", None)
    if callable(length) and int(length()) > 0:
        raise GenerationInputError(
            "past_key_values holds a transformers cache filled by another model; llama.cpp keeps its own: "
            "pass an empty cache, or the past_key_values this model returned"
        )


def _row_mask(mask: torch.Tensor | None, row: int) -> torch.Tensor | None:
    return None if mask is None else mask[row]


def _options(config: Any, prompt_length: int, kwargs: dict[str, Any]) -> dict[str, Any]:
    """transformers' generation options: the call's, else the generation config's, else its defaults."""
    config = kwargs.get("generation_config") or config

    def get(name: str, default: Any) -> Any:
        value = kwargs.get(name)
        if value is None:
            value = getattr(config, name, None)
        return default if value is None else value

    max_new = kwargs.get("max_new_tokens")
    if max_new is None:
        max_length = get("max_length", 20)
        max_new = get("max_new_tokens", None) if kwargs.get("max_length") is None else None
        max_new = max_new if max_new is not None else max(max_length - prompt_length, 0)
    eos = get("eos_token_id", None)
    eos_ids = set() if eos is None else {int(e) for e in (eos if isinstance(eos, list | tuple) else [eos])}
    pad = get("pad_token_id", None)
    pad = pad if pad is not None else (min(eos_ids) if eos_ids else 0)
    return {
        "max_new": int(max_new),
        "min_new": int(get("min_new_tokens", 0)),
        "sample": bool(get("do_sample", False)),
        "temperature": float(get("temperature", 1.0)),
        "top_k": int(get("top_k", 50)),
        "top_p": float(get("top_p", 1.0)),
        "eos": eos_ids,
        "pad": int(pad),
    }


def _sample(logits: torch.Tensor, options: dict[str, Any]) -> int:
    """One token drawn as transformers' temperature, top-k and top-p warpers (in that order) draw it."""
    scores = logits.double() / max(options["temperature"], 1e-6)
    top_k = options["top_k"]
    if 0 < top_k < scores.numel():
        kth = torch.topk(scores, top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if options["top_p"] < 1.0:
        ordered, order = torch.sort(scores, descending=False)
        cumulative = ordered.softmax(-1).cumsum(-1)
        drop = cumulative <= 1 - options["top_p"]
        drop[-1] = False
        scores = scores.masked_fill(drop.scatter(0, order, drop), float("-inf"))
    return int(torch.multinomial(scores.softmax(-1).float(), 1))
