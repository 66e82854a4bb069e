"""torch_compile: ``torch.compile`` the model in place, last, and warm its graphs up before first use.

In place (like ``nn.Module.compile``) rather than ``torch.compile(model)``: the latter wraps the model in an
``OptimizedModule`` whose state_dict keys gain an ``_orig_mod.`` prefix, which would break saving and
loading. Nothing is saved with the weights; compilation is re-applied at load (REAPPLY).

When ``static_cache`` attached a generation runtime, both of its graphs (chunked prefill, one-token
decode) are compiled here, at smash time and again at load time, so no user request ever pays for a
compilation. Torch's compile artifacts are kept in this machine's sealed compile cache, under a key the
saved model records (``smash.compile_cache``), so that a later load here skips the backend compile.
"""

from __future__ import annotations

import functools
import time
import types
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from smash import compile_cache, precompiled
from smash.algorithms.base import Algorithm, Group, Hyperparameter, SaveMode, SmashContext
from smash.errors import HyperparameterError
from smash.registry import registry
from smash.runtime import StaticGenerationRuntime, attached_runtime

COMPILED_ATTR = "_smash_compile_params"
_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _call_module(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
    return module._call_impl(*args, **kwargs)


def _own_call_impl() -> Callable[..., Any]:
    """``_call_module`` with a code object of its own, for one model.

    Dynamo keeps compiled entries, and counts them against ``recompile_limit`` (8), per code object of
    the first frame it traces. Under ``nn.Module.compile()`` that frame is transformers' ``forward``
    decorator, one code object shared by every model of the process, so after 8 compiled variants (other
    models, other shapes) each further model silently ran eagerly: seen in this project's test session.
    A fresh code object per model gives each its own entries and budget (the trick dynamo's own
    ``debug_force_nested_calls`` uses); the code is identical, so graphs and cache keys do not change.
    """
    code = _call_module.__code__.replace(co_varnames=_call_module.__code__.co_varnames)  # a new object
    return types.FunctionType(code, _call_module.__globals__, code.co_name)


@registry.register
class TorchCompile(Algorithm):
    name = "torch_compile"
    group = Group.COMPILER
    description = (
        "torch.compile of the model's forward, in place; with static_cache, its prefill and decode graphs "
        "are compiled (warmed up) when the model is smashed and when it is loaded."
    )
    hyperparameters = (
        Hyperparameter(
            "backend", str, "inductor", "torch.compile backend", choices=("inductor", "eager", "aot_eager")
        ),
        Hyperparameter(
            "mode", str, "default", "inductor mode (other backends take only 'default')", choices=_MODES
        ),
        Hyperparameter(
            "dynamic",
            bool,
            False,
            "False: one graph per shape (the static-cache runtime has exactly two shapes); True: symbolic "
            "shapes; null: torch decides (recompiles once a shape changes)",
            nullable=True,
        ),
        Hyperparameter("fullgraph", bool, False, "fail instead of falling back to eager at a graph break"),
        Hyperparameter(
            "warmup", bool, True, "compile the static-cache runtime's graphs at smash and load time"
        ),
    )
    runs_after = frozenset(
        {
            "group:quantizer",
            "group:pruner",
            "group:cacher",
            "group:kernel",
            "group:factorizer",
            "group:distiller",
            "group:batcher",
        }
    )
    save_mode = SaveMode.REAPPLY

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        if params["mode"] != "default" and params["backend"] != "inductor":
            raise HyperparameterError(
                cls.name,
                "mode",
                params["mode"],
                f"'default' with backend {params['backend']!r} (modes are inductor's)",
            )

    def applies_to(self, model: nn.Module, params: Mapping[str, Any]) -> str | None:
        if not isinstance(model, nn.Module):
            return "it compiles torch.nn.Module models only"
        return None

    def apply(self, model: nn.Module, params: Mapping[str, Any], ctx: SmashContext) -> nn.Module:
        # What nn.Module.compile() does, but on a private copy of _call_impl: see _own_call_impl.
        compiled = torch.compile(
            _own_call_impl(),
            backend=params["backend"],
            mode=None if params["mode"] == "default" else params["mode"],
            dynamic=params["dynamic"],
            fullgraph=params["fullgraph"],
        )
        model._compiled_call_impl = functools.partial(compiled, model)
        object.__setattr__(model, COMPILED_ATTR, dict(params))
        runtime = attached_runtime(model)
        if runtime is not None and params["warmup"]:
            self._warm_up(model, runtime, params, ctx)
        return model

    def _warm_up(
        self, model: nn.Module, runtime: StaticGenerationRuntime, params: Mapping[str, Any], ctx: SmashContext
    ) -> None:
        """Compile both runtime graphs now, into (or from) the model's compile-cache directory.

        With inductor the two graphs are captured ahead of time (``smash.precompiled``) and saved beside
        inductor's kernels, so a load in a matching environment neither traces nor compiles.

        At load, ``ctx.metadata`` is what was recorded at smash time: its key is reused when the
        environment is the same, so the warm-up finds the graphs this machine compiled before.
        """
        env = compile_cache.environment(runtime.device)
        shapes = asdict(runtime.spec)
        key: str | None = None  # the eager backends generate no code: nothing worth keeping
        if params["backend"] == "inductor":
            key = compile_cache.saved_key(ctx.metadata, env, shapes) or compile_cache.model_key(
                model, params, shapes, env
            )
        start = time.perf_counter()
        with compile_cache.compiling_into(key):
            outcome = precompiled.obtain(runtime, dict(params), key)
            runtime.graphs = outcome.graphs
            report = runtime.warm_up()
        ctx.metadata.update(
            compile_cache_key=key,
            compile_environment=env,
            compile_shapes=shapes,
            precompiled_graphs=outcome.how,
            warmup_seconds=round(time.perf_counter() - start, 3),
            warmup_frames_compiled=report.frames_compiled,
        )
