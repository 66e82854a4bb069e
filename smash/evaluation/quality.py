"""Quality of a smashed model against its base, on the shipped prompt set.

Causal LMs are compared by what they generate (``smash.evaluation.generation``: greedy ``generate`` of
both, through the paths users call, compiled graphs included) and where it matters for generation: at
the positions that predict the base model's own greedy continuation of each prompt (teacher-forced, so
both models see the same context). KL is
KL(base || smashed) of the full next-token distributions, in float64. Perplexity on an evaluation text
uses non-overlapping windows. Models without a language-model head (encoders, classifiers) are compared
on the prompt set, padded in batches, or on seeded images for vision models: by the cosine similarity
of their last hidden states mean-pooled over the attention mask (as sentence-transformers pools), and,
where the model has a classification head, by the agreement of their top-1 labels.

``Settings.quality_eager`` (default) runs the teacher-forced forwards with compiled graphs bypassed
(``torch.compiler.set_stance("force_eager")``): every prompt has a different length, and a compiled
model would otherwise recompile for the quality pass alone. Compilation does not change the weights;
the efficiency runs measure the compiled path.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from smash.errors import EvaluationInputError
from smash.evaluation.efficiency import floating_dtype, has_lm_head, model_device, pixel_shape
from smash.evaluation.generation import GenerationComparison, compare_generations
from smash.evaluation.prompts import load_prompts, quality_prompt_ids
from smash.evaluation.report import QualityReport
from smash.evaluation.settings import Settings
from smash.evaluation.timing import make_cache, unwrap

ENCODER_BATCH = 8  # inputs per forward when encoders and classifiers are compared
QUALITY_IMAGES = 32  # seeded images for a vision model when settings.quality_prompts is unset


@contextlib.contextmanager
def eager(enabled: bool) -> Iterator[None]:
    set_stance = getattr(torch.compiler, "set_stance", None)
    if not enabled or set_stance is None:
        yield
        return
    with set_stance("force_eager"):
        yield


def _eos_ids(model: Any) -> set[int]:
    eos = getattr(getattr(unwrap(model), "generation_config", None), "eos_token_id", None)
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, list | tuple) else [eos])}


@torch.inference_mode()
def greedy_continuation(model: Any, prompt: torch.Tensor, new_tokens: int) -> list[int]:
    """The base model's greedy tokens after ``prompt`` (1, n), stopping after an end-of-sequence token."""
    eos = _eos_ids(model)
    out = model(input_ids=prompt, past_key_values=make_cache(model), use_cache=True)
    tokens: list[int] = []
    for _ in range(new_tokens):
        token = int(out.logits[0, -1].argmax())
        tokens.append(token)
        if token in eos or len(tokens) == new_tokens:
            break
        step = torch.tensor([[token]], device=prompt.device)
        out = model(input_ids=step, past_key_values=out.past_key_values, use_cache=True)
    return tokens


def chunked_logits(model: Any, ids: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """Float logits over ``ids`` (batch 1) fed ``chunk`` tokens at a time through a KV cache: the shapes,
    and so the kernels, that generation uses rather than the long-prompt path (hqq 8-bit layers
    dequantize for prompts of >= 32 rows)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    parts = []
    with torch.no_grad():
        for start in range(0, ids.shape[1], chunk):
            out = model(ids[:, start : start + chunk], past_key_values=cache, use_cache=True)
            parts.append(out.logits[0].float())
    return torch.cat(parts)


@torch.inference_mode()
def _log_probs(model: Any, ids: torch.Tensor, start: int, count: int) -> torch.Tensor:
    logits = model(input_ids=ids, use_cache=False).logits[0, start : start + count]
    return torch.log_softmax(logits.to(torch.float64), dim=-1)


def compare_distributions(
    base_lp: torch.Tensor, smashed_lp: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position KL(base || smashed) and top-1 agreement of two (positions, vocab) log-prob tensors."""
    kl = (base_lp.exp() * (base_lp - smashed_lp)).sum(-1).clamp_min(0.0)
    agree = base_lp.argmax(-1) == smashed_lp.argmax(-1)
    return kl, agree


def _causal_prompts(base: Any, settings: Settings, tokenizer: Any) -> list[list[int]]:
    config: Any = unwrap(base).config
    vocab = int(config.vocab_size)
    return quality_prompt_ids(
        tokenizer, vocab, count=settings.quality_prompts, chat=settings.use_chat_template, seed=settings.seed
    )


def _causal(
    base: Any, smashed: Any, settings: Settings, tokenizer: Any, generations: GenerationComparison
) -> QualityReport:
    """Teacher-forced KL and top-1 at the positions of the base's own greedy generation of each prompt."""
    device = model_device(base)
    prompts = _causal_prompts(base, settings, tokenizer)
    kls: list[torch.Tensor] = []
    agreements: list[torch.Tensor] = []
    for ids, continuation in zip(prompts, generations.base_tokens, strict=True):
        full = torch.tensor([ids + list(continuation)], device=device)
        start, count = len(ids) - 1, len(continuation)
        kl, agree = compare_distributions(
            _log_probs(base, full, start, count),
            _log_probs(smashed, full.to(model_device(smashed)), start, count),
        )
        kls.append(kl.cpu())
        agreements.append(agree.cpu())
    kl_all, agree_all = torch.cat(kls), torch.cat(agreements)
    ppl = _perplexities(base, smashed, settings, tokenizer)
    return QualityReport(
        kind="causal_lm",
        prompts=len(prompts),
        positions=int(kl_all.numel()),
        kl_mean=float(kl_all.mean()),
        kl_max=float(kl_all.max()),
        top1_agreement=float(agree_all.double().mean()),
        perplexity_base=ppl[0],
        perplexity_smashed=ppl[1],
        perplexity_tokens=ppl[2],
        generation_agreement=generations.token_agreement,
        generation_prefix=generations.prefix_fraction,
        generation_exact=generations.exact_fraction,
        generation_new_tokens=generations.new_tokens,
    )


def read_eval_text(path: str) -> str:
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise EvaluationInputError(
            f"evaluation text {path!r} cannot be read ({e})", "Pass a UTF-8 text file."
        ) from e
    if not text.strip():
        raise EvaluationInputError(f"evaluation text {path!r} is empty", "Pass a file with some text in it.")
    return text


@torch.inference_mode()
def perplexity(model: Any, ids: torch.Tensor, window: int) -> tuple[float, int]:
    """exp(mean negative log-likelihood) over non-overlapping windows of ``ids`` (1-D); (ppl, tokens)."""
    device = model_device(model)
    total, count = 0.0, 0
    for begin in range(0, ids.numel() - 1, window):
        chunk = ids[begin : begin + window + 1].to(device)
        if chunk.numel() < 2:
            break
        logits = model(input_ids=chunk[None, :-1], use_cache=False).logits[0].to(torch.float64)
        total += float(torch.nn.functional.cross_entropy(logits, chunk[1:], reduction="sum"))
        count += chunk.numel() - 1
    return math.exp(total / count), count


def _perplexities(
    base: Any, smashed: Any, settings: Settings, tokenizer: Any
) -> tuple[float | None, float | None, int | None]:
    if settings.eval_text is None:
        return None, None, None
    if tokenizer is None:
        raise EvaluationInputError(
            f"perplexity on {settings.eval_text!r} needs a tokenizer", "Pass tokenizer= to evaluate()."
        )
    text = read_eval_text(settings.eval_text)
    ids = torch.tensor(tokenizer(text)["input_ids"][: settings.ppl_max_tokens + 1])
    if ids.numel() < 2:
        raise EvaluationInputError(
            f"evaluation text {settings.eval_text!r} is one token", "Pass a longer text."
        )
    base_ppl, tokens = perplexity(base, ids, settings.ppl_window)
    smashed_ppl, _ = perplexity(smashed, ids, settings.ppl_window)
    return base_ppl, smashed_ppl, tokens


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(batch, positions, hidden) -> (batch, hidden) in float64: the mean over the real positions only
    (sentence-transformers' mean pooling), so padding never moves an embedding."""
    hidden = hidden.to(torch.float64)
    if mask is None:
        return hidden.mean(1)
    weights = mask.to(device=hidden.device, dtype=torch.float64)[..., None]
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def _padded(prompts: list[list[int]], pad: int) -> dict[str, torch.Tensor]:
    """Right-padded ids and their attention mask, as a tokenizer pads a batch."""
    ids = torch.full((len(prompts), max(len(p) for p in prompts)), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, : len(prompt)] = torch.tensor(prompt, dtype=torch.long)
        mask[row, : len(prompt)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def _token_batches(base: Any, settings: Settings, tokenizer: Any) -> list[dict[str, torch.Tensor]]:
    config: Any = unwrap(base).config
    vocab = int(getattr(config, "vocab_size", 256))
    if tokenizer is not None:
        texts = load_prompts()[: settings.quality_prompts]
        prompts = [[int(i) for i in tokenizer(t)["input_ids"]] for t in texts]
    else:
        prompts = quality_prompt_ids(
            None, vocab, count=settings.quality_prompts, chat=False, seed=settings.seed
        )
    pad = getattr(config, "pad_token_id", None)
    pad = pad if isinstance(pad, int) and 0 <= pad < vocab else 0
    return [_padded(prompts[i : i + ENCODER_BATCH], pad) for i in range(0, len(prompts), ENCODER_BATCH)]


def _pixel_batches(settings: Settings, size: int, channels: int) -> list[dict[str, torch.Tensor]]:
    """Seeded images in [-1, 1] (the range of a normalized image), ``quality_prompts`` of them."""
    count = settings.quality_prompts or QUALITY_IMAGES
    generator = torch.Generator().manual_seed(settings.seed)
    images = torch.rand((count, channels, size, size), generator=generator) * 2 - 1
    return [{"pixel_values": chunk} for chunk in images.split(ENCODER_BATCH)]


def encoder_batches(base: Any, settings: Settings, tokenizer: Any) -> list[dict[str, torch.Tensor]]:
    """The inputs both models see: the prompt set, padded in batches with an attention mask; or, for
    vision models (``config.image_size`` and ``num_channels``, no vocabulary), seeded pixel values."""
    shape = pixel_shape(base)
    if shape is not None:
        return _pixel_batches(settings, *shape)
    return _token_batches(base, settings, tokenizer)


def _on(model: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch on the model's device, pixel values in the model's floating dtype (a half model's conv
    refuses float32 input)."""
    device, dtype = model_device(model), floating_dtype(model)
    return {k: v.to(device, dtype) if v.is_floating_point() else v.to(device) for k, v in batch.items()}


@torch.inference_mode()
def encoder_outputs(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(mask-weighted mean of the last hidden states, float64 logits or None when the model has no head)."""
    inputs = _on(model, batch)
    out = model(**inputs, output_hidden_states=True)
    hidden = getattr(out, "last_hidden_state", None)
    if hidden is None:
        states = getattr(out, "hidden_states", None)
        hidden = states[-1] if states else out[0]
    logits = getattr(out, "logits", None)
    pooled = masked_mean(hidden, inputs.get("attention_mask")).cpu()
    return pooled, None if logits is None else logits.to(torch.float64).cpu()


def top1_labels(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """One label per input (sequence or image classification), or per real token (token classification)."""
    labels = logits.argmax(-1)
    if labels.dim() == 2 and mask is not None and mask.shape == labels.shape:
        return labels[mask.bool()]
    return labels.reshape(-1)


def _encoder(base: Any, smashed: Any, settings: Settings, tokenizer: Any) -> QualityReport:
    """Cosine of the pooled last hidden states per input; with a classification head, also the share of
    inputs whose top-1 label the smashed model keeps."""
    cosines: list[torch.Tensor] = []
    agreements: list[torch.Tensor] = []
    for batch in encoder_batches(base, settings, tokenizer):
        base_pooled, base_logits = encoder_outputs(base, batch)
        smashed_pooled, smashed_logits = encoder_outputs(smashed, batch)
        cosines.append(torch.nn.functional.cosine_similarity(base_pooled, smashed_pooled, dim=-1))
        if base_logits is not None and smashed_logits is not None:
            mask = batch.get("attention_mask")
            agreements.append(top1_labels(base_logits, mask) == top1_labels(smashed_logits, mask))
    cosine = torch.cat(cosines)
    agree = torch.cat(agreements) if agreements else None
    return QualityReport(
        kind="encoder" if agree is None else "classifier",
        prompts=int(cosine.numel()),
        positions=int(cosine.numel() if agree is None else agree.numel()),
        cosine_mean=float(cosine.mean()),
        cosine_min=float(cosine.min()),
        label_agreement=None if agree is None else float(agree.double().mean()),
    )


def evaluate_quality(base: Any, smashed: Any, settings: Settings, *, tokenizer: Any = None) -> QualityReport:
    if not has_lm_head(base):
        with eager(settings.quality_eager):
            return _encoder(base, smashed, settings, tokenizer)
    prompts = _causal_prompts(base, settings, tokenizer)
    # generate() as users call it: compiled graphs and the static-cache runtime included, never bypassed
    generations = compare_generations(base, smashed, prompts, settings.quality_new_tokens)
    with eager(settings.quality_eager):
        return _causal(base, smashed, settings, tokenizer, generations)
