"""Smash time of our hqq against pruna 0.3.4's, 4-bit group 64, on the real SmolLM2-135M-Instruct (fp32).

    bash benchmarks/setup_pruna_venv                             # once: .venv-pruna with pruna 0.3.4
    .venv/bin/python benchmarks/smash_time.py                    # 3 runs a side, 2 threads (~5-10 min)
    .venv/bin/python benchmarks/smash_time.py --iterations 5,10  # + ours at 5 and 10 optimizer iterations
    .venv/bin/python benchmarks/smash_time.py --runs 1 --threads 1 --model HF_FOLDER   # quick check, e.g.
                                                                 # on a tiny random Llama saved to a folder

Sides, each run in a fresh subprocess that loads the model from the HF folder itself:
  ours    ``smash.smash(model, {"hqq": {"weight_bits": 4, "group_size": 64}})`` under .venv/bin/python
          (hqq's optimizer at our default iteration count; ``--iterations`` adds rows at other counts);
  pruna   pruna 0.3.4's ``smash(model, SmashConfig({"hqq": {"weight_bits": 4, "group_size": 64,
          "compute_dtype": "torch.bfloat16"}}, device="cpu"), experimental=True)`` under .venv-pruna's python
          (bfloat16 as ours; pruna's default float16 with ``--pruna-compute-dtype float16``. pruna marks hqq
          cuda-only: ``experimental=True`` skips that check; its torchao int4 patching fails on CPU and
          pruna goes on with hqq's HQQLinear, which the JSON's ``log_errors`` shows).
Only the smash call is timed: wall (perf_counter) and the process's CPU time (all its threads), after
model load and ``import smash`` / ``import pruna``; what the call imports itself (hqq's modules, on both
sides) counts, as it does for a user's first smash. Our smash deep-copies the input first (its default);
pruna's works in place. Runs go round-robin (ours, ours at other iteration counts, pruna; then again) so
the shared machine's load hits each side alike. "x pruna" = median of ours / median of pruna.

Quality against the fp32 base, identical code for both sides: the parent builds the evaluation's token
sequences (smash.evaluation's prompt set through the chat template, each followed by the base model's
32-token greedy continuation), every child writes its logits at those positions to a file, and the parent
compares them with the base's through ``smash.evaluation.quality.compare_distributions`` (float64):
top-1 agreement and KL(base || smashed), mean and max over positions.
Threads: ``torch.set_num_threads(--threads)`` plus OMP/MKL_NUM_THREADS on both sides, OMP_WAIT_POLICY=PASSIVE
set before torch is imported. Telemetry off for pruna (PRUNA_METRICS_ENABLED=false; no network here).
The table goes to stdout; the JSON (every run: smash wall and CPU, model load and quality-forward times,
peak RSS, versions, the load average at its start; load averages before and after) goes to
benchmarks/results/smash_time.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spin-waiting threads slow shared CPUs

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "smash_time.json"
OURS_PYTHON = ROOT / ".venv" / "bin" / "python"
PRUNA_PYTHON = ROOT / ".venv-pruna" / "bin" / "python"
BITS, GROUP = 4, 64
NEW_TOKENS = 32
TARGET_RATIO = 0.25  # issue 8 item 5: our smash time <= 0.25x pruna's, same config, same machine


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="smashes per side, each in a fresh process")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, the same on both sides")
    parser.add_argument(
        "--iterations",
        default="",
        help="comma-separated extra optimizer_iterations counts for our side (the default always runs)",
    )
    parser.add_argument(
        "--pruna-compute-dtype",
        choices=("bfloat16", "float16"),
        default="bfloat16",
        help="pruna hqq's compute_dtype (pruna's default float16; ours is bfloat16)",
    )
    parser.add_argument("--model", type=Path, default=None, help="HF folder (default: SmolLM2 materialized)")
    parser.add_argument("--ours-python", type=Path, default=OURS_PYTHON)
    parser.add_argument("--pruna-python", type=Path, default=PRUNA_PYTHON)
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON output path")
    # Child mode: one smash in this process (run by the parent under either venv's python).
    parser.add_argument("--child", choices=("ours", "pruna"), help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--sequences", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--logits-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.threads < 1:
        parser.error("--runs and --threads must be >= 1")
    try:
        args.extra_iterations = [int(i) for i in args.iterations.split(",") if i.strip()]
    except ValueError:
        parser.error(f"--iterations must be comma-separated integers, got {args.iterations!r}")
    return args


# --- shared by parent and children (stdlib + torch + transformers only: runs under both venvs) -----------


@torch.inference_mode()
def sequence_logits(model: Any, sequences: list[dict[str, Any]]) -> torch.Tensor:
    """Logits (positions, vocab) at the continuation positions of every sequence, full-sequence forwards
    without a cache (as ``smash.evaluation.quality`` does), concatenated in order."""
    parts = []
    for seq in sequences:
        ids = torch.tensor([seq["ids"]])
        logits = model(input_ids=ids, use_cache=False).logits[0]
        parts.append(logits[seq["start"] : seq["start"] + seq["count"]].float())
    return torch.cat(parts)


def load_model(folder: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


# --- child: load, time one smash, write logits -----------------------------------------------------------


def define_torchvision_op_schemas() -> None:
    """Let ``import torchvision`` succeed in .venv-pruna (pruna and transformers import it).

    The only torchvision wheel for torch 2.13 that this machine can install is the CUDA build: its C
    extension needs libtorch_cuda.so and cannot load next to the CPU torch, and torchvision 0.28's
    ``_meta_registrations`` then fails on the two ops it registers without checking that the extension
    loaded (``operator torchvision::nms does not exist``). Declaring their schemas is enough to import;
    nothing on pruna's hqq path calls a torchvision op.
    """
    lib = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    define_torchvision_op_schemas.lib = lib  # type: ignore[attr-defined]  # keep the library alive


def smash_ours(model: Any, config: dict[str, Any]) -> tuple[Any, dict[str, Any], float, float]:
    sys.path.insert(0, str(ROOT))
    import smash

    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    smashed = smash.smash(model, config)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return smashed, {"smash": smash.__version__}, wall, cpu


def smash_pruna(model: Any, config: dict[str, Any]) -> tuple[Any, dict[str, Any], float, float]:
    import inspect

    import hqq
    import pruna
    from hqq.core.quantize import Quantizer
    from pruna import SmashConfig, smash

    smash_config = SmashConfig(config, device="cpu")
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    smashed = smash(model, smash_config, experimental=True)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    opt_params = inspect.signature(Quantizer.optimize_weights).parameters["opt_params"].default
    versions = {"pruna": pruna.__version__, "hqq": hqq.__version__, "hqq_iters": opt_params["iters"]}
    return smashed, versions, wall, cpu


def peak_rss_mb() -> float | None:
    """This process's own peak RSS (VmHWM: ru_maxrss would carry the forking parent's over exec)."""
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    line = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def run_child(args: argparse.Namespace) -> dict[str, Any]:
    import transformers

    torch.set_num_threads(args.threads)
    if args.child == "pruna":
        define_torchvision_op_schemas()  # before transformers' model classes import torchvision
    start = time.perf_counter()
    model = load_model(args.model)
    load_s = time.perf_counter() - start
    config = json.loads(args.config)
    smash_fn = smash_ours if args.child == "ours" else smash_pruna
    smashed, versions, wall, cpu = smash_fn(model, config)
    sequences = json.loads(args.sequences.read_text())
    start = time.perf_counter()
    torch.save(sequence_logits(smashed, sequences), args.logits_out)
    return {
        "smash_wall_s": wall,
        "smash_cpu_s": cpu,
        "load_s": load_s,
        "quality_forwards_s": time.perf_counter() - start,
        "peak_rss_mb": peak_rss_mb(),
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, **versions},
    }


# --- parent: sequences, round-robin children, metrics, table ---------------------------------------------


def build_sequences(model: Any, tokenizer: Any) -> list[dict[str, Any]]:
    """The evaluation's prompts, each with the base model's greedy continuation (teacher-forced later)."""
    from smash.evaluation.prompts import quality_prompt_ids
    from smash.evaluation.quality import greedy_continuation

    prompts = quality_prompt_ids(tokenizer, int(model.config.vocab_size), count=None, chat=True, seed=0)
    sequences = []
    for ids in prompts:
        continuation = greedy_continuation(model, torch.tensor([ids]), NEW_TOKENS)
        sequences.append({"ids": ids + continuation, "start": len(ids) - 1, "count": len(continuation)})
    return sequences


def side_specs(args: argparse.Namespace) -> list[dict[str, Any]]:
    base = {"weight_bits": BITS, "group_size": GROUP}
    specs = [{"label": "ours", "side": "ours", "config": {"hqq": dict(base)}}]
    for count in args.extra_iterations:
        config = {"hqq": {**base, "optimizer_iterations": count}}
        specs.append({"label": f"ours it={count}", "side": "ours", "config": config})
    pruna_config = {"hqq": {**base, "compute_dtype": f"torch.{args.pruna_compute_dtype}"}}
    specs.append({"label": "pruna 0.3.4", "side": "pruna", "config": pruna_config})
    return specs


def child_env(threads: int) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_WAIT_POLICY": "PASSIVE",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "PRUNA_METRICS_ENABLED": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


def spawn(spec: dict[str, Any], args: argparse.Namespace, folder: Path, scratch: Path) -> dict[str, Any]:
    python = args.ours_python if spec["side"] == "ours" else args.pruna_python
    logits, result_file = scratch / "logits.pt", scratch / "result.json"
    command = [str(python), __file__, "--child", spec["side"], "--config", json.dumps(spec["config"])]
    command += ["--model", str(folder), "--threads", str(args.threads)]
    command += ["--sequences", str(scratch / "sequences.json")]
    command += ["--logits-out", str(logits), "--result-out", str(result_file)]
    load = os.getloadavg()[0]
    done = subprocess.run(command, env=child_env(args.threads), capture_output=True, text=True)
    output = done.stdout + done.stderr
    if done.returncode:
        return {"error": f"exit {done.returncode}: {output[-3000:]}", "load_average_1m": load}
    result = json.loads(result_file.read_text())
    result["load_average_1m"] = load
    result["log_errors"] = sorted({line.strip()[:300] for line in output.splitlines() if "ERROR" in line})
    result["logits"] = torch.load(logits)
    logits.unlink()
    result_file.unlink()
    return result


def quality(base_logits: torch.Tensor, logits: torch.Tensor) -> dict[str, float]:
    from smash.evaluation.quality import compare_distributions

    base_lp = base_logits.double().log_softmax(-1)
    kl, agree = compare_distributions(base_lp, logits.double().log_softmax(-1))
    return {"top1": float(agree.double().mean()), "kl_mean": float(kl.mean()), "kl_max": float(kl.max())}


def summarize(spec: dict[str, Any], runs: list[dict[str, Any]], our_default: int) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    iterations = (
        spec["config"]["hqq"].get("optimizer_iterations", our_default) if spec["side"] == "ours" else None
    )
    row: dict[str, Any] = {key: spec[key] for key in ("label", "side", "config")}
    row["runs"] = runs
    if ok and spec["side"] == "pruna":
        iterations = ok[0]["versions"]["hqq_iters"]  # hqq's default: pruna does not expose it
    row["optimizer_iterations"] = iterations
    if ok:
        walls = [r["smash_wall_s"] for r in ok]
        row.update(
            smash_wall_s=statistics.median(walls),
            smash_wall_all_s=walls,
            smash_cpu_s=statistics.median(r["smash_cpu_s"] for r in ok),
            quality=ok[0]["quality"],
            quality_same_every_run=all(r["quality"] == ok[0]["quality"] for r in ok),
            versions=ok[0]["versions"],
        )
    return row


def run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from transformers import AutoTokenizer

    from smash.algorithms.hqq import HQQ

    torch.set_num_threads(args.threads)
    if args.model is None:
        from pruna_hub.smollm2 import materialize

        args.model = materialize()
    load_before = os.getloadavg()
    our_default = next(h.default for h in HQQ.hyperparameters if h.name == "optimizer_iterations")
    specs = side_specs(args)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        base = load_model(args.model)
        sequences = build_sequences(base, AutoTokenizer.from_pretrained(args.model))
        (scratch / "sequences.json").write_text(json.dumps(sequences))
        base_logits = sequence_logits(base, sequences)
        del base
        runs: dict[str, list[dict[str, Any]]] = {s["label"]: [] for s in specs}
        for index in range(args.runs):
            for spec in specs:
                result = spawn(spec, args, args.model, scratch)
                if "logits" in result:
                    result["quality"] = quality(base_logits, result.pop("logits"))
                runs[spec["label"]].append(result)
                print_progress(spec["label"], index, result)
    rows = [summarize(spec, runs[spec["label"]], our_default) for spec in specs]
    return {
        "model": str(args.model),
        "config": f"hqq {BITS}-bit, group size {GROUP}",
        "settings": {
            "runs": args.runs,
            "threads": args.threads,
            "pruna_compute_dtype": args.pruna_compute_dtype,
            "ours_python": str(args.ours_python),
            "pruna_python": str(args.pruna_python),
            "quality_sequences": len(sequences),
            "quality_positions": int(base_logits.shape[0]),
            "continuation_tokens": NEW_TOKENS,
        },
        "environment": environment(load_before),
        "rows": rows,
        "ours_over_pruna": ratios(rows),
        "target": targets(rows),
    }


def ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    pruna = next((r for r in rows if r["side"] == "pruna" and "smash_wall_s" in r), None)
    if pruna is None:
        return {}
    return {
        r["label"]: r["smash_wall_s"] / pruna["smash_wall_s"]
        for r in rows
        if r["side"] == "ours" and "smash_wall_s" in r
    }


def targets(rows: list[dict[str, Any]]) -> dict[str, dict[str, bool | float]]:
    """Issue 8's target per row of ours: <= TARGET_RATIO x pruna's median time, quality the same or better
    (top-1 agreement not lower and mean KL not higher than pruna's)."""
    pruna = next((r for r in rows if r["side"] == "pruna" and "smash_wall_s" in r), None)
    if pruna is None:
        return {}
    verdicts = {}
    for row in rows:
        if row["side"] != "ours" or "smash_wall_s" not in row:
            continue
        ratio = row["smash_wall_s"] / pruna["smash_wall_s"]
        time_met = ratio <= TARGET_RATIO
        top1_met = row["quality"]["top1"] >= pruna["quality"]["top1"]
        kl_met = row["quality"]["kl_mean"] <= pruna["quality"]["kl_mean"]
        verdicts[row["label"]] = {
            "ratio": ratio,
            "time": time_met,
            "top1": top1_met,
            "kl": kl_met,
            "met": time_met and top1_met and kl_met,
        }
    return verdicts


def environment(load_before: tuple[float, float, float]) -> dict[str, Any]:
    """smash_smollm2's record of this process (threads as the children set them) plus load averages."""
    from benchmarks.smash_smollm2 import environment as parent_environment

    return {
        **parent_environment(),
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
    }


def print_progress(label: str, index: int, result: dict[str, Any]) -> None:
    if "error" in result:
        print(f"{label} run {index + 1}: FAILED\n{result['error']}", flush=True)
        return
    q = result["quality"]
    print(
        f"{label} run {index + 1}: smash {result['smash_wall_s']:.1f} s wall, {result['smash_cpu_s']:.1f} s "
        f"CPU (load {result['load_average_1m']:.1f}); top-1 {q['top1']:.3f}, KL {q['kl_mean']:.4f}",
        flush=True,
    )


def print_table(result: dict[str, Any]) -> None:
    print(
        f"\n{'side':<14} {'iters':>5} {'smash s':>8} {'all runs s':<22} {'CPU s':>7} {'x pruna':>8} "
        f"{'top-1':>6} {'KL mean':>8} {'KL max':>7}"
    )
    for row in result["rows"]:
        if "smash_wall_s" not in row:
            print(f"{row['label']:<14} {'-':>5} failed: see the JSON's runs[].error")
            continue
        ratio = result["ours_over_pruna"].get(row["label"])
        q = row["quality"]
        print(
            f"{row['label']:<14} {row['optimizer_iterations']:>5} {row['smash_wall_s']:>8.1f} "
            f"{' '.join(f'{w:.1f}' for w in row['smash_wall_all_s']):<22} {row['smash_cpu_s']:>7.1f} "
            f"{'-' if ratio is None else f'{ratio:.3f}':>8} {q['top1']:>6.3f} {q['kl_mean']:>8.4f} "
            f"{q['kl_max']:>7.3f}"
        )
    for label, v in result["target"].items():
        checks = ", ".join(f"{name} {'yes' if v[name] else 'no'}" for name in ("time", "top1", "kl"))
        print(
            f"target (<= {TARGET_RATIO}x pruna, top-1 and KL no worse) {label}: "
            f"{'MET' if v['met'] else 'not met'} ({checks})"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        args.result_out.write_text(json.dumps(run_child(args)))
        return 0
    if not args.pruna_python.exists():
        raise SystemExit(f"{args.pruna_python} is missing: run `bash benchmarks/setup_pruna_venv` first")
    result = run(args)
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    env = result["environment"]
    print(
        f"\nwrote {args.out} (load average {env['load_average_before'][0]:.1f} before, "
        f"{env['load_average_after'][0]:.1f} after, on {env['cpus']} CPUs: timings on a shared machine move)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
