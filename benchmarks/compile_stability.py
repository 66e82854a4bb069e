"""Compiled decoding, hand-assembled vs smashed: latency stability, recompilations, memory, reload cost.

(a) hand: ``model.compile()`` + ``model.generate(cache_implementation="static")`` for each generation
    length, the way one assembles it from the transformers docs, nothing else;
(b) smashed: ``smash(model, {"static_cache": ..., "torch_compile": {}})``, warmed up at smash time, then
    ``PrunaModel.generate`` for the same lengths.

Both decode greedily from the same 128-token prompt of real text; each token's arrival time comes from a
streamer (transformers' ``put``/``end`` protocol, which both paths call per token). Each pipeline runs in
its own process with empty inductor caches (a fresh machine's cold start) so peak RSS and compile costs
are its own. With ``--reload`` the smashed model is saved and loaded again in fresh processes: with its
compile cache, without it, and the base model eagerly, timing load -> first token.

    .venv/bin/python benchmarks/compile_stability.py                 # 16 and 256 new tokens (~8 min)
    .venv/bin/python benchmarks/compile_stability.py --full          # 16, 32, 64, 128, 256, 512
    .venv/bin/python benchmarks/compile_stability.py --lengths 16,128,512
    .venv/bin/python benchmarks/compile_stability.py --reload        # + load -> first token timings
    .venv/bin/python benchmarks/compile_stability.py --model tiny    # tiny random Llama: compile cost only
    .venv/bin/python benchmarks/compile_stability.py --full --quantizer int8-head   # a quantized recipe

Writes benchmarks/results/compile_stability[_tiny].json. Most of the wall time is compilation (25-35 s per
SmolLM2 graph on a quiet 2-core CPU, 2-3x that under load; --reload adds two more cold compiles). Timings
on a shared machine are noisy: the JSON records the load average before and after, and the table says so.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import itertools
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_LENGTHS = (16, 256)  # two cache sizes: enough to show the recompile, ~8 min
FULL_LENGTHS = (16, 32, 64, 128, 256, 512)
# --quantizer: what the smashed pipeline quantizes with before static_cache + torch_compile (the hand
# pipeline stays fp32: it is the reference for recompiles, not for quantized speed).
QUANTIZERS: dict[str, dict[str, Any]] = {
    "none": {},
    "int8": {"int8_weight": {}},
    "int8-head": {"int8_weight": {"skip_modules": ""}},
    "hqq4": {"hqq": {"weight_bits": 4, "group_size": 64}},
    "hqq8": {"hqq": {"weight_bits": 8, "group_size": 64}},
    "hqq8-head": {"hqq": {"weight_bits": 8, "group_size": 64, "skip_modules": ""}},
}
PROMPT_TOKENS = 128
CHUNK = 64
RESULTS = Path(__file__).parent / "results"
TEXT = (
    "The history of computing is a story of abstractions stacked on abstractions. Early machines were "
    "programmed by rewiring panels; then came stored programs, assemblers, compilers and operating systems. "
    "Each layer hid the one below it and let more people build more ambitious things. Today a language "
    "model runs on libraries that schedule kernels on hardware their authors never saw. "
)


class TimestampStreamer:
    """Records when each token arrives; the first ``put`` is the prompt."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value: Any) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# --- model and prompt ------------------------------------------------------------------------------------


def load_base(model_name: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if model_name == "tiny":
        config = LlamaConfig(
            vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
            architectures=["LlamaForCausalLM"],
        )  # fmt: skip
        torch.manual_seed(0)
        return LlamaForCausalLM(config).eval(), None
    from pruna_hub.smollm2 import materialize

    path = materialize()
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def make_prompt(tokenizer: Any) -> Any:
    import torch

    if tokenizer is None:
        return torch.randint(0, 256, (1, PROMPT_TOKENS), generator=torch.Generator().manual_seed(0))
    ids = tokenizer(TEXT * 8, return_tensors="pt").input_ids[:, :PROMPT_TOKENS]
    assert ids.shape[1] == PROMPT_TOKENS
    return ids


def cache_len(lengths: list[int]) -> int:
    need = PROMPT_TOKENS + max(lengths)
    return -(-need // CHUNK) * CHUNK


def kv_cache_mb(model: Any, max_len: int) -> float:
    config = model.config
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * kv_heads * head_dim * max_len * 4 / 2**20


# --- one pipeline (child process) ------------------------------------------------------------------------


def run_lengths(generate: Any, ids: Any, lengths: list[int]) -> list[dict[str, Any]]:
    """Each length once, in order, in one process: the sweep a server's requests make.

    Memory: freed memory is handed back to the kernel once, before the sweep (what compiling and loading
    left), and never inside it, so "growth over the sweep" is what the process really grows by: each
    length's peak (the kernel's high-water mark, reset per length) over the RSS the sweep started from.
    Trimming before every length instead would count, at every length, the allocator re-faulting the
    working set it had just been made to return (measured: 16-24 MB per length for SmolLM2 hqq 8-bit,
    flat across lengths, against 15 MB once and then nothing without the trims).
    """
    from smash.evaluation.memory import (
        current_rss,
        high_water_mark,
        release_freed_memory,
        reset_high_water_mark,
    )
    from smash.runtime import compiled_frames

    release_freed_memory()
    sweep_start = current_rss() or 0
    rows = []
    for new in lengths:
        streamer, frames = TimestampStreamer(), compiled_frames()
        reset_high_water_mark()
        start = current_rss() or 0
        generate(ids, new, streamer)
        times = streamer.times
        rows.append({
            "new_tokens": new,
            "ttft_s": times[1] - times[0],
            "decode_ms": [(b - a) * 1000 for a, b in itertools.pairwise(times[1:])],
            "frames_compiled": compiled_frames() - frames,
            "rss_peak_mb": rss_peak_mb(),
            "rss_sweep_start_mb": sweep_start / 2**20,
            "rss_start_mb": start / 2**20,
            "rss_run_peak_mb": (high_water_mark() or current_rss() or 0) / 2**20,
        })  # fmt: skip
    return rows


def noise_floor(target_ms: float, count: int) -> list[float]:
    """``count`` timings of one fixed single-threaded computation lasting about ``target_ms``.

    The same work every time, so its spread is the machine's own (other tenants, frequency, interrupts):
    a decode std under this floor cannot be asked of this machine.
    """
    import torch

    from smash.parallel import torch_threads

    a, b = torch.randn(64, 512), torch.randn(512, 512)

    def work(reps: int) -> float:
        start = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        return (time.perf_counter() - start) * 1000

    with torch_threads(1):
        reps = max(1, round(10 * target_ms / work(10)))
        reps = max(1, round(reps * target_ms / statistics.median(work(reps) for _ in range(5))))
        return [work(reps) for _ in range(count)]


def child_pipeline(
    kind: str, model_name: str, lengths: list[int], save_to: str | None, quantizer: str = "none"
) -> dict[str, Any]:
    import torch

    from smash import smash
    from smash.runtime import compiled_frames

    base, tokenizer = load_base(model_name)
    ids = make_prompt(tokenizer)
    rss_loaded = rss_peak_mb()
    setup: dict[str, Any] = {"rss_after_load_mb": rss_loaded}
    if kind == "hand":
        base.compile()

        def generate(prompt: Any, new: int, streamer: Any) -> Any:
            with torch.no_grad():
                return base.generate(
                    prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                    cache_implementation="static", streamer=streamer,
                )  # fmt: skip

    else:
        start, frames = time.perf_counter(), compiled_frames()
        config = {
            **QUANTIZERS[quantizer],
            "static_cache": {"max_cache_len": cache_len(lengths), "prefill_chunk": CHUNK},
            "torch_compile": {},
        }
        smashed = smash(base, config, tokenizer=tokenizer, inplace=True)
        setup.update(
            smash_s=time.perf_counter() - start, warmup_frames=compiled_frames() - frames,
            rss_after_warmup_mb=rss_peak_mb(), kv_cache_mb=kv_cache_mb(base, cache_len(lengths)),
            config=config, decode_threads=smashed.metadata["static_cache"].get("decode_threads"),
            precompiled_graphs=smashed.metadata.get("torch_compile", {}).get("precompiled_graphs"),
        )  # fmt: skip

        def generate(prompt: Any, new: int, streamer: Any) -> Any:
            return smashed.generate(prompt, max_new_tokens=new, min_new_tokens=new, streamer=streamer)

    setup["rss_before_sweep_mb"] = rss_peak_mb()
    rows = run_lengths(generate, ids, lengths)
    result: dict[str, Any] = {"pipeline": kind, "setup": setup, "lengths": rows}
    if kind == "smashed":
        steps = [ms for row in rows for ms in row["decode_ms"]]
        result["noise_floor_ms"] = noise_floor(statistics.median(steps), len(steps))
        if save_to:
            smashed.save_pretrained(save_to)
    return result


def child_load(mode: str, model_name: str, folder: str) -> dict[str, Any]:
    """Seconds from load start to the first generated token: the cost a serving process pays to start."""
    import torch

    start = time.perf_counter()
    if mode == "eager":
        model, tokenizer = load_base(model_name)
        ids = make_prompt(tokenizer)
        loaded = time.perf_counter()
        with torch.no_grad():
            model.generate(ids, max_new_tokens=1, do_sample=False)
    else:
        from smash import PrunaModel

        model = PrunaModel.from_pretrained(folder)
        ids = make_prompt(model.tokenizer if model_name != "tiny" else None)
        loaded = time.perf_counter()
        model.generate(ids, max_new_tokens=1)
    done = time.perf_counter()
    return {"mode": mode, "load_s": loaded - start, "first_token_s": done - loaded, "total_s": done - start}


# --- parent: orchestration, summary, table ---------------------------------------------------------------


def spawn(args: list[str], scratch: Path, *, smash_cache: Path | None = None) -> dict[str, Any]:
    env = {
        **os.environ,
        "TORCHINDUCTOR_CACHE_DIR": str(scratch / "inductor"),
        "SMASH_COMPILE_CACHE_DIR": str(smash_cache or scratch / "smash"),
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    done = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"child {args} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    rows = result["lengths"]
    steps = [ms for row in rows for ms in row["decode_ms"]]
    median = statistics.median(steps)
    sweep_start = rows[0]["rss_sweep_start_mb"]
    return {
        "decode_median_ms": median,
        "decode_mean_ms": statistics.fmean(steps),
        "decode_std_ms": statistics.pstdev(steps),
        "decode_max_ms": max(steps),
        "std_over_median": statistics.pstdev(steps) / median,
        "max_over_median": max(steps) / median,
        "ttft_s": [row["ttft_s"] for row in rows],
        "recompiles_during_sweep": sum(row["frames_compiled"] for row in rows),
        # peak RSS of any length of the sweep over the RSS the sweep started from (see run_lengths)
        "rss_growth_over_sweep_mb": max(row["rss_run_peak_mb"] for row in rows) - sweep_start,
        "rss_growth_per_length_mb": {row["new_tokens"]: row["rss_run_peak_mb"] - sweep_start for row in rows},
        # includes compiling: the hand pipeline compiles during the sweep, the smashed one in its warm-up
        "rss_growth_from_load_mb": rows[-1]["rss_peak_mb"] - result["setup"]["rss_after_load_mb"],
        "per_length_median_ms": {row["new_tokens"]: statistics.median(row["decode_ms"]) for row in rows},
    }


def noise_summary(times: list[float] | None) -> str:
    if not times:
        return "not measured"
    median = statistics.median(times)
    return (
        f"{statistics.pstdev(times) / median:.3f} (max / median {max(times) / median:.1f}; a fixed "
        f"1-thread workload of {median:.1f} ms timed {len(times)} times after the sweep)"
    )


def print_table(summaries: dict[str, dict[str, Any]], extra: dict[str, Any]) -> None:
    print(f"\n{'metric':36} {'hand (compile + generate)':>26} {'smashed runtime':>18}")
    keys = [
        ("decode median ms", "decode_median_ms", "{:.2f}"),
        ("decode mean ms", "decode_mean_ms", "{:.2f}"),
        ("decode std ms", "decode_std_ms", "{:.2f}"),
        ("decode max ms", "decode_max_ms", "{:.1f}"),
        ("std / median", "std_over_median", "{:.3f}"),
        ("max / median", "max_over_median", "{:.1f}"),
        ("recompiles during the sweep", "recompiles_during_sweep", "{}"),
        ("peak RSS growth over the sweep MB", "rss_growth_over_sweep_mb", "{:.1f}"),
        ("peak RSS growth from load MB", "rss_growth_from_load_mb", "{:.1f}"),
    ]
    for label, key, fmt in keys:
        hand, ours = summaries["hand"][key], summaries["smashed"][key]
        print(f"{label:36} {fmt.format(hand):>26} {fmt.format(ours):>18}")
    ttft = {k: ", ".join(f"{t:.2f}" for t in v["ttft_s"]) for k, v in summaries.items()}
    print(f"{'TTFT per length s':36} {ttft['hand']:>26} {ttft['smashed']:>18}")
    for label, value in extra.items():
        print(f"{label:36} {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("smollm2", "tiny"), default="smollm2")
    parser.add_argument("--full", action="store_true", help="sweep 16..512 new tokens (six lengths)")
    parser.add_argument("--lengths", help="comma-separated generation lengths (overrides --full)")
    parser.add_argument("--reload", action="store_true", help="also time load -> first token, cache on/off")
    parser.add_argument("--child", choices=("hand", "smashed", "load-cached", "load-uncached", "load-eager"))
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument(
        "--quantizer", choices=tuple(QUANTIZERS), default="none", help="smashed pipeline's quantizer"
    )
    args = parser.parse_args()
    lengths = (
        [int(x) for x in args.lengths.split(",")]
        if args.lengths
        else list(FULL_LENGTHS if args.full else DEFAULT_LENGTHS)
    )
    if args.child in ("hand", "smashed"):
        print(json.dumps(child_pipeline(args.child, args.model, lengths, args.folder, args.quantizer)))
        return
    if args.child:
        print(json.dumps(child_load(args.child.removeprefix("load-"), args.model, args.folder or "")))
        return
    run_parent(args.model, lengths, args.reload, args.quantizer)


def run_parent(model_name: str, lengths: list[int], reload: bool, quantizer: str) -> None:
    common = ["--model", model_name, "--lengths", ",".join(map(str, lengths)), "--quantizer", quantizer]
    load_before = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        scratch, folder = Path(tmp), Path(tmp) / "saved"
        results = {
            "hand": spawn([*common, "--child", "hand"], scratch / "hand"),
            "smashed": spawn([*common, "--child", "smashed", "--folder", str(folder)], scratch / "smashed"),
        }
        reloads = run_reloads(model_name, folder, scratch) if reload else {}
    summaries = {kind: summarize(result) for kind, result in results.items()}
    setup = results["smashed"]["setup"]
    extra = {
        "smashed config": json.dumps(setup["config"]),
        "decode threads (static_cache's choice)": str(setup["decode_threads"]),
        "smash + warm-up s (2 graphs)": f"{setup['smash_s']:.1f} ({setup['warmup_frames']} frames)",
        "precompiled graphs": str(setup.get("precompiled_graphs")),
        "static KV cache MB": f"{setup['kv_cache_mb']:.1f}",
        "smashed RSS growth per length MB": ", ".join(
            f"{n}: {mb:.1f}" for n, mb in summaries["smashed"]["rss_growth_per_length_mb"].items()
        ),
        "smashed decode median per length ms": ", ".join(
            f"{n}: {ms:.1f}" for n, ms in summaries["smashed"]["per_length_median_ms"].items()
        ),
        "machine noise floor std / median": noise_summary(results["smashed"].get("noise_floor_ms")),
        **{
            f"load -> first token, {k} s": f"{v['total_s']:.2f} (load {v['load_s']:.2f})"
            for k, v in reloads.items()
        },
        "load average before / after": f"{load_before} / {os.getloadavg()} on {os.cpu_count()} cores",
    }
    print_table(summaries, extra)
    print("Caveat: measured on a shared, loaded 2-core CPU machine; compare rows within one run only.")
    record = {
        "model": model_name, "quantizer": quantizer, "prompt_tokens": PROMPT_TOKENS, "lengths": lengths,
        "summaries": summaries,
        "raw": results, "reload": reloads, "load_average": {"before": load_before, "after": os.getloadavg()},
        "wall_s": time.perf_counter() - started, "versions": versions(),
    }  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = ("_tiny" if model_name == "tiny" else "") + ("" if quantizer == "none" else f"_{quantizer}")
    out = RESULTS / f"compile_stability{suffix}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


def run_reloads(model_name: str, folder: Path, scratch: Path) -> dict[str, Any]:
    """Load the saved smashed model in fresh processes: with the compile cache the smash left on this
    machine (what a second load here finds), and with empty caches (a first load on another machine)."""
    base = ["--model", model_name]
    return {
        "eager base": spawn([*base, "--child", "load-eager"], scratch / "eager"),
        "compiled, with cache": spawn(
            [*base, "--child", "load-cached", "--folder", str(folder)],
            scratch / "c",
            smash_cache=scratch / "smashed" / "smash",
        ),
        "compiled, no cache": spawn(
            [*base, "--child", "load-uncached", "--folder", str(folder)], scratch / "u"
        ),
    }


def versions() -> dict[str, str]:
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": sys.version.split()[0],
    }


if __name__ == "__main__":
    main()
