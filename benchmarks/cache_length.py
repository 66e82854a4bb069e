"""What the static cache's size costs: decode latency, prefill and per-run peak memory against max_cache_len.

The static-cache runtime attends over the whole pre-allocated cache at every step (that is what keeps its
shapes, and so its graphs, fixed), so a recipe's ``max_cache_len`` is a trade between the longest
prompt + generation a published model accepts and what every token costs. For each length this smashes
SmolLM2-135M-Instruct with a recipe's algorithms (default: the CPU Llama default, hqq 8-bit with the
lm_head + static_cache + torch_compile) and measures it with ``smash.evaluation`` (prompt 128; 32, 64
and 128 new tokens; 3 runs each), in one process per length so that compiles and memory do not carry over.

    .venv/bin/python benchmarks/cache_length.py                          # 256 512 1024 2048, ~12 min here
    .venv/bin/python benchmarks/cache_length.py --lengths 256,2048 --quantizer int8-head

Prints a table and writes benchmarks/results/cache_length.json (with the load average: timings on a shared
machine move; the peak-memory column does not).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spin-waiting made prefill 20x slower

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "cache_length.json"
QUANTIZERS: dict[str, dict[str, Any]] = {
    "hqq8-head": {"hqq": {"weight_bits": 8, "group_size": 64, "skip_modules": ""}},
    "int8-head": {"int8_weight": {"skip_modules": ""}},
    "int8": {"int8_weight": {}},
    "hqq": {"hqq": {"weight_bits": 8, "group_size": 64}},
    "none": {},
}


def child(cache_len: int, quantizer: str) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pruna_hub.smollm2 import materialize
    from smash import smash
    from smash.evaluation import Settings
    from smash.evaluation.efficiency import measure_efficiency

    path = materialize()
    base = AutoModelForCausalLM.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = {**QUANTIZERS[quantizer], "static_cache": {"max_cache_len": cache_len}, "torch_compile": {}}
    start = time.perf_counter()
    smashed = smash(base, config, inplace=True)
    smash_s = time.perf_counter() - start
    report = measure_efficiency(smashed, Settings(), label=f"cache {cache_len}", tokenizer=tokenizer)
    assert report.decode_latency_s is not None
    peaks = [run.peak_increase_bytes for run in report.runs if run.peak_increase_bytes is not None]
    return {
        "max_cache_len": cache_len,
        "config": config,
        "smash_s": smash_s,
        "decode_median_ms": report.decode_latency_s.median * 1e3,
        "decode_std_ms": report.decode_latency_s.std * 1e3,
        "ttft_mean_s": report.ttft_s.mean,
        "peak_increase_mb_max": max(peaks) / 2**20 if peaks else None,
        "peak_increase_mb_per_run": [p / 2**20 for p in peaks],
        "memory_per_token_mb": (report.memory_per_token_bytes or 0.0) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="256,512,1024,2048", help="comma-separated max_cache_len values")
    parser.add_argument("--quantizer", choices=tuple(QUANTIZERS), default="hqq8-head")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.quantizer)))
        return
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for length in (int(x) for x in args.lengths.split(",")):
            env = {**os.environ, "SMASH_COMPILE_CACHE_DIR": str(Path(scratch) / str(length))}
            command = [sys.executable, __file__, "--child", str(length), "--quantizer", args.quantizer]
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"max_cache_len {length} failed:\n{done.stderr[-4000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"{'max_cache_len':>13} {'decode median ms':>17} {'std ms':>7} {'TTFT s':>7} {'run peak MB':>12}")
    for row in rows:
        peak = "n/a" if row["peak_increase_mb_max"] is None else f"{row['peak_increase_mb_max']:.1f}"
        print(
            f"{row['max_cache_len']:>13} {row['decode_median_ms']:>17.1f} {row['decode_std_ms']:>7.1f} "
            f"{row['ttft_mean_s']:>7.3f} {peak:>12}"
        )
    load = {"before": load_before, "after": os.getloadavg()}
    print(f"load average before / after: {load['before']} / {load['after']} on {os.cpu_count()} cores")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"quantizer": args.quantizer, "rows": rows, "load_average": load}, indent=2)
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
