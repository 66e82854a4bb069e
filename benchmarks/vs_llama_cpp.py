"""llama.cpp against our torch CPU variants on the real SmolLM2-135M-Instruct: decode, TTFT, weight bytes.

Same prompt for every engine (128 tokens of the shipped prompt text, SmolLM2's tokenizer), same threads,
64 new tokens, greedy. Every measurement runs in a fresh process (load, one warm-up generation, one timed
generation), so no engine profits from another's warm caches; medians over ``--runs`` processes.

Variants:
- ``llama.cpp <type>``: llama-cpp-python alone (``Llama.generate``) on the GGUF that smash's llama_cpp
  algorithm wrote at Q4_0, Q8_0 and F16: the CPU anchor;
- ``smash llama_cpp <type>``: the same file through ``PrunaModel`` (logits kept for every position);
- ``llama-cpu-int8`` / ``llama-cpu-hqq8``: the built-in recipes' SmashConfigs as written (``--eager``
  swaps inductor for dynamo's eager backend, for a quick run), saved and loaded back;
- ``fp32 eager``: the transformers base model, a greedy loop over ``forward`` with a dynamic cache.

Resident weight bytes: llama.cpp's ``llama_model_size`` (tensor bytes as loaded), torch's parameters,
buffers and state dict counted once per storage (``smash.evaluation.efficiency.weight_bytes``).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/vs_llama_cpp.py [--runs 5] [--eager] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "vs_llama_cpp.json"
GGUF_TYPES = ("Q4_0", "Q8_0", "F16")
RECIPES = ("llama-cpu-int8", "llama-cpu-hqq8")


# --- the child: one measurement --------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _measure_llama(path: str, prompt: list[int], new_tokens: int, threads: int) -> dict[str, Any]:
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=path, n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False
    )

    def run() -> tuple[float, list[float], list[int]]:
        stamps: list[float] = []
        tokens: list[int] = []
        llm.reset()  # else generate reuses the warm-up's prompt from the KV cache: no prefill to time
        start = time.perf_counter()
        for token in llm.generate(
            prompt, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True
        ):
            stamps.append(time.perf_counter())
            tokens.append(int(token))
            if len(tokens) == new_tokens:
                break
        return stamps[0] - start, [b - a for a, b in itertools.pairwise(stamps)], tokens

    run()
    ttft, steps, tokens = run()
    return {
        "ttft_s": ttft,
        "decode_s": statistics.median(steps),
        "weight_bytes": int(llama_cpp.llama_model_size(llm.model)),
        "rss_bytes": _rss_bytes(),
        "tokens": tokens,
    }


def _measure_torch(kind: str, path: str, prompt: list[int], new_tokens: int, threads: int) -> dict[str, Any]:
    import torch

    from smash.evaluation.efficiency import choose_decode_path, weight_bytes
    from smash.evaluation.settings import Settings
    from smash.evaluation.timing import generate_run, greedy_loop, runtime_run

    torch.set_num_threads(threads)
    if kind == "base":
        from transformers import AutoModelForCausalLM

        model: Any = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True).eval()
    else:
        from smash import PrunaModel

        model = PrunaModel.from_pretrained(path)
    decode_path = choose_decode_path(model, Settings())
    run = {"runtime": runtime_run, "generate": generate_run}.get(decode_path, greedy_loop)
    ids = torch.tensor([prompt])
    device = torch.device("cpu")
    run(model, ids, new_tokens, device)
    timing = run(model, ids, new_tokens, device)
    inner = model.__dict__.get("model", model)
    size = (
        inner.weight_bytes()
        if hasattr(inner, "weight_bytes") and callable(inner.weight_bytes)
        else weight_bytes(model)
    )
    return {
        "ttft_s": timing.ttft_s,
        "decode_s": statistics.median(timing.step_latencies_s),
        "weight_bytes": int(size),
        "rss_bytes": _rss_bytes(),
        "tokens": [int(t) for t in timing.tokens[0].tolist()],
        "decode_path": decode_path,
    }


def child(args: argparse.Namespace) -> None:
    prompt = json.loads(Path(args.prompt_file).read_text())
    if args.child == "llama":
        result = _measure_llama(args.path, prompt, args.new_tokens, args.threads)
    else:
        result = _measure_torch(args.child, args.path, prompt, args.new_tokens, args.threads)
    print("RESULT " + json.dumps(result))


# --- the parent: prepare once, measure in fresh processes -------------------------------------------------


def prompt_ids(folder: Path, length: int) -> list[int]:
    from transformers import AutoTokenizer

    from smash.evaluation.prompts import efficiency_input_ids

    tokenizer = AutoTokenizer.from_pretrained(folder)
    return [int(t) for t in efficiency_input_ids(tokenizer, 0, length=length, batch_size=1, seed=0)[0]]


def prepare(work: Path, base_folder: Path, *, eager: bool, threads: int) -> dict[str, tuple[str, str]]:
    """Smash and save every variant once; returns label -> (child kind, path)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pruna_hub.recipes import load_recipes
    from smash import SmashConfig, smash

    torch.set_num_threads(threads)
    base = AutoModelForCausalLM.from_pretrained(base_folder, use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(base_folder)
    variants: dict[str, tuple[str, str]] = {}
    for quant in GGUF_TYPES:
        folder = work / f"gguf-{quant}"
        if not (folder / f"model-{quant}.gguf").is_file():
            config = SmashConfig({"llama_cpp": {"quant_type": quant, "n_threads": threads, "n_ctx": 512}})
            smash(base, config, tokenizer=tokenizer).save_pretrained(folder)
        variants[f"llama.cpp {quant}"] = ("llama", str(folder / f"model-{quant}.gguf"))
        variants[f"smash llama_cpp {quant}"] = ("pruna", str(folder))
    book = load_recipes()
    for name in RECIPES:
        folder = work / (name + ("-eager" if eager else ""))
        if not (folder / "smash_config.json").is_file():
            spec = dict(book.get(name).smash)
            if eager and "torch_compile" in spec:
                spec["torch_compile"] = {**spec["torch_compile"], "backend": "eager"}
            start = time.perf_counter()
            smash(base, SmashConfig(spec), tokenizer=tokenizer).save_pretrained(folder)
            print(f"smashed {name} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        variants[name + (" (eager)" if eager else "")] = ("pruna", str(folder))
    variants["fp32 eager"] = ("base", str(base_folder))
    return variants


def measure(kind: str, path: str, prompt_file: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--child", kind, "--path", path, "--prompt-file", str(prompt_file),
        "--new-tokens", str(args.new_tokens), "--threads", str(args.threads),
    ]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=1800)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"{kind} {path} failed:\n{done.stderr[-3000:]}")
    return json.loads(line.removeprefix("RESULT "))


def summarize(label: str, runs: list[dict[str, Any]], reference: list[int] | None) -> dict[str, Any]:
    tokens = runs[0]["tokens"]
    same = (
        None
        if reference is None
        else sum(a == b for a, b in zip(tokens, reference, strict=False)) / len(reference)
    )
    return {
        "variant": label,
        "runs": len(runs),
        "decode_ms_median": statistics.median(r["decode_s"] for r in runs) * 1e3,
        "ttft_ms_median": statistics.median(r["ttft_s"] for r in runs) * 1e3,
        "weight_bytes": runs[0]["weight_bytes"],
        "rss_bytes_median": statistics.median(r["rss_bytes"] for r in runs),
        "token_agreement_with_fp32": same,
        "decode_path": runs[0].get("decode_path", "llama.cpp generate"),
        "per_run_decode_ms": [round(r["decode_s"] * 1e3, 3) for r in runs],
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'variant':<28} {'decode ms/tok':>13} {'TTFT ms':>9} {'weights MB':>10} {'RSS MB':>8} {'agree':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        agree = "-" if r["token_agreement_with_fp32"] is None else f"{r['token_agreement_with_fp32']:.2f}"
        lines.append(
            f"{r['variant']:<28} {r['decode_ms_median']:>13.2f} {r['ttft_ms_median']:>9.1f} "
            f"{r['weight_bytes'] / 1e6:>10.1f} {r['rss_bytes_median'] / 1e6:>8.0f} {agree:>6}"
        )
    return "\n".join(lines)


def environment(args: argparse.Namespace) -> dict[str, Any]:
    import platform

    import llama_cpp
    import torch
    import transformers

    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    return {
        "processor": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "llama_cpp_python": llama_cpp.__version__,
        "threads": args.threads,
        "omp_wait_policy": "PASSIVE",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per variant (median)")
    parser.add_argument("--quick", action="store_true", help="2 runs per variant")
    parser.add_argument("--eager", action="store_true", help="torch_compile with dynamo's eager backend")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--work", type=Path, default=None, help="keep the smashed artifacts here")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", choices=("llama", "pruna", "base"), help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--prompt-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    runs = 2 if args.quick else args.runs
    from pruna_hub.smollm2 import materialize

    base_folder = materialize()
    work = args.work or Path(tempfile.mkdtemp(prefix="vs-llama-cpp-"))
    work.mkdir(parents=True, exist_ok=True)
    prompt = prompt_ids(base_folder, args.prompt_tokens)
    prompt_file = work / "prompt.json"
    prompt_file.write_text(json.dumps(prompt))
    variants = prepare(work, base_folder, eager=args.eager, threads=args.threads)
    results: dict[str, list[dict[str, Any]]] = {label: [] for label in variants}
    for _ in range(runs):  # interleaved, so a slow minute of a shared CPU hits every variant alike
        for label, (kind, path) in variants.items():
            results[label].append(measure(kind, path, prompt_file, args))
            print(f"{label}: {results[label][-1]['decode_s'] * 1e3:.2f} ms/token", file=sys.stderr)
    reference = results["fp32 eager"][0]["tokens"]
    rows = [summarize(label, r, reference) for label, r in results.items()]
    print(table(rows))
    report = {
        "command": " ".join(["benchmarks/vs_llama_cpp.py", *sys.argv[1:]]),
        "prompt_tokens": len(prompt),
        "new_tokens": args.new_tokens,
        "environment": environment(args),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
