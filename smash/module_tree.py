"""Module-tree helpers shared by the weight algorithms: which linear layers they touch, replacing them,
tied embeddings, and the layer table they record for loading."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from torch import nn

from smash.errors import ArtifactError


def set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def tied_to_input_embeddings(model: nn.Module, linear: nn.Linear) -> bool:
    """True when the layer's weight is the input embedding matrix (tied lm_head)."""
    get = getattr(model, "get_input_embeddings", None)
    embeddings = get() if callable(get) else None
    weight = getattr(embeddings, "weight", None)
    return weight is not None and linear.weight.data_ptr() == weight.data_ptr()


def name_matches(name: str, patterns: tuple[str, ...]) -> bool:
    """A module name matches a pattern equal to the name or to one of its dotted parts."""
    return any(name == p or p in name.split(".") for p in patterns)


def parse_patterns(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def linear_layers(
    model: nn.Module, skip_modules: str, *, include_tied: bool = False
) -> Iterator[tuple[str, nn.Linear]]:
    """Plain ``nn.Linear`` layers not named in ``skip_modules`` (nor tied to the input embeddings unless
    ``include_tied``)."""
    skip = parse_patterns(skip_modules)
    for name, module in model.named_modules():
        if type(module) is not nn.Linear or name_matches(name, skip):
            continue
        if include_tied or not tied_to_input_embeddings(model, module):
            yield name, module


def no_linear_reason(model: nn.Module, skip_modules: str, *, include_tied: bool = False) -> str | None:
    """The ``applies_to`` answer of an algorithm that works on ``linear_layers``: None when there is one."""
    if next(linear_layers(model, skip_modules, include_tied=include_tied), None) is None:
        return f"no nn.Linear layer outside skip_modules={skip_modules!r}"
    return None


def untie_output_embeddings(model: nn.Module) -> None:
    """Record in the model's config that lm_head no longer shares the input embedding matrix.

    Quantizing a tied lm_head gives it its own (quantized) weights while the embedding keeps full
    precision; the saved config.json must then describe an untied model, or loading would re-tie them.
    """
    config = getattr(model, "config", None)
    if config is not None:
        config.tie_word_embeddings = False


def shape_record(linear: nn.Linear) -> dict[str, Any]:
    """What ``restore`` needs to rebuild an empty quantized layer (saved in smash_artifact.json)."""
    return {"in": linear.in_features, "out": linear.out_features, "bias": linear.bias is not None}


def recorded_layers(
    model: nn.Module, metadata: Mapping[str, Any], algorithm: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The layer table of smash_artifact.json (untrusted input): each entry checked before use."""
    layers = metadata.get("layers")
    if not isinstance(layers, dict):
        raise ArtifactError(ARTIFACT, f"{algorithm} metadata has no 'layers' table", _RESAVE)
    modules = dict(model.named_modules())
    for name, shape in layers.items():
        sizes_ok = isinstance(shape, dict) and all(
            type(shape.get(k)) is int and shape[k] > 0 for k in ("in", "out")
        )
        if not sizes_ok or not isinstance(shape.get("bias"), bool):
            raise ArtifactError(ARTIFACT, f"{algorithm} layer {name!r} has a malformed shape record", _RESAVE)
        linear = modules.get(name)
        if not isinstance(linear, nn.Linear):
            problem = f"{algorithm} layer {name!r} is not a Linear of this model"
            raise ArtifactError(ARTIFACT, problem, _RESAVE)
        if (shape["in"], shape["out"]) != (linear.in_features, linear.out_features):
            problem = (
                f"{algorithm} layer {name!r} records {shape['in']}x{shape['out']}, but config.json builds it "
                f"{linear.in_features}x{linear.out_features}"
            )
            raise ArtifactError(ARTIFACT, problem, _RESAVE)  # before anything of that size is allocated
        yield name, shape


ARTIFACT = "smash_artifact.json"
_RESAVE = "The file was not written by a compatible smash; re-save the model."
