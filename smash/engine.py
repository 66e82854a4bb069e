"""smash(): validate, order, apply, wrap."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from smash.algorithms.base import SmashContext
from smash.config import SmashConfig
from smash.errors import AlgorithmFailedError, BrokenSmashedModelError, NotApplicableError, SmashError
from smash.model import PrunaModel
from smash.ordering import determine_algorithm_order


def model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def check_applicable(model: nn.Module, config: SmashConfig, device: torch.device) -> None:
    """Raise NotApplicableError for the first algorithm that cannot run on this model and device."""
    for name in determine_algorithm_order(config):
        cls = config.registry.get(name)
        if device.type not in cls.devices:
            raise NotApplicableError(
                name, f"it runs on {', '.join(sorted(cls.devices))}, not on {device.type}"
            )
        reason = cls().applies_to(model, config[name])
        if reason is not None:
            raise NotApplicableError(name, reason)


def smash(
    model: nn.Module,
    config: SmashConfig | Mapping[str, Mapping[str, Any]],
    *,
    device: str | torch.device | None = None,
    tokenizer: Any = None,
    inplace: bool = False,
) -> PrunaModel:
    """Apply the config's algorithms to ``model`` in the order their declarations require.

    By default the model is deep-copied first, so the input stays usable whatever happens (this costs a
    second copy of the weights in memory). With ``inplace=True`` the input itself is transformed: cheaper,
    but if an algorithm fails the input is left partially modified, and the raised AlgorithmFailedError
    says so (``input_modified=True``).
    """
    if not isinstance(config, SmashConfig):
        config = SmashConfig(config)
    target = torch.device(device) if device is not None else model_device(model)
    order = determine_algorithm_order(config)
    check_applicable(model, config, target)
    working = model if inplace else copy.deepcopy(model)
    working = working.to(target)
    metadata: dict[str, dict[str, Any]] = {}
    for name in order:
        ctx = SmashContext(device=target.type)
        try:
            working = config.registry.create(name).apply(working, config[name], ctx)
        except SmashError:
            raise
        except Exception as e:
            raise AlgorithmFailedError(name, e, input_modified=inplace) from e
        metadata[name] = ctx.metadata
    probe_forward(working, order)
    return PrunaModel(working, config, metadata=metadata, tokenizer=tokenizer)


def probe_inputs(model: nn.Module) -> dict[str, torch.Tensor] | None:
    """A tiny input the model's forward takes: token ids (and a decoder start for encoder-decoders), or
    pixels for vision models; None when the model's inputs cannot be told from its config."""
    config: Any = getattr(model, "config", None)
    device = model_device(model)
    if config is None:
        return None
    vocab = getattr(config, "vocab_size", None)
    if isinstance(vocab, int) and vocab > 0:
        inputs = {"input_ids": torch.arange(4, device=device).remainder(vocab)[None]}
        if getattr(config, "is_encoder_decoder", False):
            inputs["decoder_input_ids"] = inputs["input_ids"][:, :1]
        return inputs
    size, channels = getattr(config, "image_size", None), getattr(config, "num_channels", None)
    if isinstance(size, int) and isinstance(channels, int):
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        return {"pixel_values": torch.zeros(1, channels, size, size, device=device, dtype=dtype)}
    return None


def probe_forward(model: nn.Module, order: list[str]) -> None:
    """Run one forward on a tiny input, eagerly (nothing compiles for it), so that ``smash`` never returns a
    model whose first call crashes (T5's feed-forward reads ``.weight`` of a layer int8 replaced)."""
    inputs = probe_inputs(model)
    if inputs is None or not order:
        return
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        stack.enter_context(torch.compiler.set_stance("force_eager"))
        try:
            model(**inputs)
        except Exception as e:  # any layer's failure: the model is unusable as smashed
            raise BrokenSmashedModelError(order, e) from e
