"""smash(): validate, order, apply, wrap."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from smash.algorithms.base import SmashContext
from smash.config import SmashConfig
from smash.errors import AlgorithmFailedError, NotApplicableError, SmashError
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
    return PrunaModel(working, config, metadata=metadata, tokenizer=tokenizer)
