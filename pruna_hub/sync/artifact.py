"""The published folder (smashed model + card + benchmark JSON and plot) and its verification."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pruna_hub.card import (
    BaseCard,
    CardInput,
    applied_algorithms,
    flatten_efficiency,
    folder_files,
    render_card,
)
from pruna_hub.errors import HubError

if TYPE_CHECKING:
    from pruna_hub.sync.context import SyncContext
    from pruna_hub.sync.plan import Plan

REPORT_FILE = "benchmark.json"
PLOT_FILE = "benchmark.png"
# Units of the flattened metric keys, as recorded in the catalogue's metric rows.
_UNITS = {"ttft_s": "s", "decode_latency_s": "s", "peak_memory_bytes": "B", "memory_per_token_bytes": "B"}


def quality_numbers(quality: Any) -> dict[str, float]:
    if quality is None:
        return {}
    from smash.evaluation.metrics import QUALITY_LABELS

    return {k: float(v) for k in QUALITY_LABELS if isinstance(v := getattr(quality, k, None), int | float)}


def evaluation_metrics(report: Any) -> dict[str, float]:
    """A flat summary for the CLI: smashed metrics, their ratio to the base, and quality."""
    base = flatten_efficiency(report.base.to_dict())
    smashed = flatten_efficiency(report.smashed.to_dict())
    summary = {f"smashed.{k}": v for k, v in smashed.items()}
    summary |= {f"ratio.{k}": smashed[k] / base[k] for k in smashed if base.get(k)}
    return summary | quality_numbers(report.quality)


def run_metrics(efficiency: Any, quality: Any) -> list[Any]:
    """Metric rows of one benchmark run (efficiency of that model; quality on the smashed run)."""
    from registry_db.store import MetricValue

    rows = [
        MetricValue(key, value, _UNITS.get(key.split(".")[0]))
        for key, value in flatten_efficiency(efficiency.to_dict()).items()
    ]
    # The catalogue's queries sort on these names (e.g. `catalogue best --metric decode_latency_ms`).
    decode = efficiency.decode_latency_s
    if decode is not None:
        rows.append(MetricValue("decode_latency_ms", decode.median * 1e3, "ms"))
    rows.append(MetricValue("ttft_ms", efficiency.ttft_s.mean * 1e3, "ms"))
    rows += [MetricValue(k, v) for k, v in quality_numbers(quality).items()]
    return rows


def hardware_of(report: Any, device: str) -> dict[str, Any]:
    env = report.environment
    return {
        "device": device,
        "name": env.get("cuda") or env.get("processor"),
        "cpu_count": env.get("cpu_count"),
        "threads": env.get("threads"),
    }


def versions_of(report: Any) -> dict[str, str]:
    env = report.environment
    versions = {k: str(env[k]) for k in ("torch", "transformers", "smash", "python") if env.get(k)}
    try:
        from importlib.metadata import version

        versions["hqq"] = version("hqq")
    except Exception:  # hqq is a dependency; a broken install only loses a line of the card
        pass
    return versions


def build_artifact_folder(ctx: SyncContext, plan: Plan, smashed: Any, report: Any, folder: Path) -> None:
    """Add the card, the report and the plot next to the saved model."""
    from smash.evaluation.plot import plot_sweep

    (folder / REPORT_FILE).write_text(report.to_json() + "\n")
    plot_sweep(
        {"base": report.base, "smashed": report.smashed}, folder / PLOT_FILE, title=plan.target_repo_id
    )
    data = dataclasses.replace(card_input(ctx, plan, smashed, report), published_files=folder_files(folder))
    (folder / "README.md").write_text(str(render_card(data)))  # size on disk: the files of this commit


def card_input(ctx: SyncContext, plan: Plan, smashed: Any, report: Any) -> CardInput:
    base_card = ctx.hub.base_card(plan.base_repo_id, revision=plan.revision)
    config = smashed.smash_config
    env = report.environment
    return CardInput(
        repo_id=plan.target_repo_id,
        base_repo_id=plan.base_repo_id,
        base_revision=plan.revision,
        base=BaseCard.from_card_data(base_card.metadata),
        recipe_name=plan.recipe.name,
        recipe_version=plan.recipe.version,
        recipe_hash=plan.recipe.content_hash,
        device=plan.recipe.device,
        algorithms=applied_algorithms(config, smashed.order),
        smash_config_json=config.to_json(),
        metrics={
            "base": flatten_efficiency(report.base.to_dict()),
            "smashed": flatten_efficiency(report.smashed.to_dict()),
        },
        quality=quality_numbers(report.quality),
        quality_gate=plan.recipe.quality_gate.to_dict(),
        hardware={k: str(v) for k, v in hardware_of(report, ctx.device).items() if v is not None},
        versions=versions_of(report) | {"omp_wait_policy": str(env.get("omp_wait_policy"))},
        plot_filename=PLOT_FILE,
        hub_url=ctx.hub.api.endpoint,
    )


VERIFY_PROMPTS = 4
VERIFY_NEW_TOKENS = 16


def verify_artifact(
    ctx: SyncContext, repo_id: str, commit_sha: str, *, reference: tuple[Any, Any] | None
) -> tuple[bool, str]:
    """Load the published commit back through the Hub and run it as a user would.

    Generative models generate: with ``reference`` (the in-memory smashed model that passed the gate),
    the loaded model's greedy generations must equal its generations token for token, so the published
    model generates what was measured against the base. Encoders and classifiers: their outputs on a
    probe input must equal the reference's. Without a reference (a crash-resumed job adopting an earlier
    commit), the loaded model must generate from every prompt, or give finite outputs.
    """
    from pruna_hub.hub_client import translate
    from smash import PrunaModel
    from smash.errors import SmashError
    from smash.evaluation.efficiency import has_lm_head

    try:
        loaded = PrunaModel.from_pretrained(
            repo_id, revision=commit_sha, token=ctx.settings.token, device=ctx.device
        )
        if has_lm_head(loaded.model):
            return _verify_generation(loaded, reference)
        return _verify_outputs(loaded, reference)
    except Exception as e:
        hub_error = e if isinstance(e, HubError) else translate(e, operation="verify", repo_id=repo_id)
        if hub_error is not None and hub_error.retryable:  # the Hub, not the model: the job is retried,
            raise hub_error from e  # and the rerun adopts the tagged commit and verifies it again
        if not isinstance(e, SmashError | HubError | OSError):
            raise
        return False, f"loading {repo_id}@{commit_sha[:12]} and running it failed: {type(e).__name__}: {e}"


def _verify_generation(loaded: Any, reference: tuple[Any, Any] | None) -> tuple[bool, str]:
    from smash.evaluation.generation import greedy_tokens, room, score
    from smash.evaluation.prompts import quality_prompt_ids

    vocab = int(getattr(loaded.model.config, "vocab_size", 2))
    tokenizer = reference[1] if reference is not None else loaded.tokenizer
    prompts = quality_prompt_ids(tokenizer, vocab, count=VERIFY_PROMPTS, chat=False, seed=0)
    budgets = [room(loaded, len(p), VERIFY_NEW_TOKENS) for p in prompts]
    generated = [greedy_tokens(loaded, p, n) for p, n in zip(prompts, budgets, strict=True)]
    if not all(generated):
        return False, "the loaded model generated nothing for some prompts"
    if reference is None:
        return True, json.dumps({"generated_prompts": len(generated), "new_tokens": VERIFY_NEW_TOKENS})
    expected = [greedy_tokens(reference[0], p, n) for p, n in zip(prompts, budgets, strict=True)]
    agreement = sum(score(e, g)[0] for e, g in zip(expected, generated, strict=True)) / len(prompts)
    if generated != expected:
        return (
            False,
            f"the model loaded from the Hub generates differently from the one that passed the gate "
            f"(token agreement {agreement:.0%} over {len(prompts)} prompts x {VERIFY_NEW_TOKENS} tokens)",
        )
    return True, json.dumps(
        {"generation_exact": True, "prompts": len(prompts), "new_tokens": VERIFY_NEW_TOKENS}
    )


def _verify_outputs(loaded: Any, reference: tuple[Any, Any] | None) -> tuple[bool, str]:
    """An encoder's or classifier's first output (hidden states, logits) on the probe input smash uses."""
    import torch

    from smash.engine import probe_inputs

    inputs = probe_inputs(loaded.model)
    if inputs is None:
        return False, "cannot tell what input the loaded model takes from its config"
    with torch.no_grad():
        got = loaded(**inputs)[0].float()
        if not torch.isfinite(got).all():
            return False, "the loaded model's outputs are not finite"
        if reference is None:
            return True, json.dumps({"outputs_finite": True})
        want = reference[0](**inputs)[0].float()
    scale = float(want.abs().max().clamp(min=1.0))
    if want.shape != got.shape or not torch.allclose(got, want, rtol=0.0, atol=1e-4 * scale):
        return False, "the model loaded from the Hub computes other outputs than the one that passed the gate"
    return True, json.dumps({"outputs_equal": True, "max_abs_diff": float((got - want).abs().max())})
