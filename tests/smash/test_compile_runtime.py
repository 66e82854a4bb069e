"""static_cache + torch_compile: exact generation, zero recompilations after warm-up, compile cache reuse.

The fast tests compile with backend="eager": recompilations are decided by dynamo's guards, which do not
depend on the backend, so they prove the runtime's shape discipline in seconds. The slow ones use
inductor for real and check numerics against eager and the compile cache in a fresh process.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import torch

from smash import (
    PrunaModel,
    SmashConfig,
    compile_cache,
    determine_algorithm_order,
    precompiled,
    registry,
    smash,
)
from smash.algorithms.base import SmashContext
from smash.errors import GenerationInputError, HyperparameterError
from smash.runtime import StaticGenerationRuntime, attached_runtime, compiled_frames, thread_candidates

RUNTIME = {"max_cache_len": 128, "prefill_chunk": 16}
# (prompt length, new tokens): shorter and longer than one chunk, exactly one chunk, up to the cache size.
REQUESTS = [(21, 30), (5, 10), (33, 50), (16, 3), (40, 80), (1, 5), (100, 28), (7, 121)]


def reference(model: torch.nn.Module, ids: torch.Tensor, new: int) -> torch.Tensor:
    """transformers' own greedy generate on the unsmashed model, exactly ``new`` tokens."""
    with torch.no_grad():
        return model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False)  # type: ignore[operator]


def prompt(length: int, seed: int = 0, rows: int = 1) -> torch.Tensor:
    return torch.randint(0, 256, (rows, length), generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def eager_compiled(tiny_llama: torch.nn.Module) -> PrunaModel:
    return smash(tiny_llama, {"static_cache": RUNTIME, "torch_compile": {"backend": "eager"}})


# --- the runtime without compilation ---------------------------------------------------------------------


def test_static_cache_runtime_equals_transformers_greedy(tiny_llama: torch.nn.Module) -> None:
    smashed = smash(tiny_llama, {"static_cache": RUNTIME})
    for i, (length, new) in enumerate(REQUESTS):
        ids = prompt(length, seed=i)
        out = smashed.generate(ids, max_new_tokens=new, min_new_tokens=new)
        assert torch.equal(out, reference(tiny_llama, ids, new)), (length, new)


def test_static_cache_runtime_serves_gpt2_too() -> None:
    """Another attention implementation (absolute positions, Conv1D projections), same exactness."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=256, n_embd=64, n_layer=2, n_head=4, n_positions=256, bos_token_id=0,
                        eos_token_id=0, architectures=["GPT2LMHeadModel"])  # fmt: skip
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(config).eval()
    smashed = smash(gpt2, {"static_cache": RUNTIME})
    for i, (length, new) in enumerate(REQUESTS[:4]):
        ids = prompt(length, seed=i)
        assert torch.equal(
            smashed.generate(ids, max_new_tokens=new, min_new_tokens=new), reference(gpt2, ids, new)
        )


def test_batches_are_padded_to_the_cache_batch_size(tiny_llama: torch.nn.Module) -> None:
    smashed = smash(tiny_llama, {"static_cache": {**RUNTIME, "batch_size": 3}})
    two_rows = prompt(19, seed=3, rows=2)
    out = smashed.generate(
        two_rows, max_new_tokens=12, min_new_tokens=12, attention_mask=torch.ones_like(two_rows)
    )
    assert out.shape == (2, 31)
    assert torch.equal(out, reference(tiny_llama, two_rows, 12))


def test_sampling_with_top_k_1_or_tiny_top_p_is_greedy(tiny_llama: torch.nn.Module) -> None:
    smashed = smash(tiny_llama, {"static_cache": RUNTIME})
    ids = prompt(9, seed=4)
    greedy = smashed.generate(ids, max_new_tokens=15, min_new_tokens=15)
    top_k = smashed.generate(
        ids, max_new_tokens=15, min_new_tokens=15, do_sample=True, top_k=1, temperature=0.7
    )
    top_p = smashed.generate(ids, max_new_tokens=15, min_new_tokens=15, do_sample=True, top_p=1e-6)
    assert torch.equal(top_k, greedy) and torch.equal(top_p, greedy)


def test_generation_stops_at_eos_and_pads_finished_rows(tiny_llama: torch.nn.Module) -> None:
    smashed = smash(tiny_llama, {"static_cache": RUNTIME})
    ids = prompt(12, seed=5)
    free = smashed.generate(ids, max_new_tokens=20, eos_token_id=[])
    eos = int(free[0, 12 + 4])  # make the 5th generated token the end-of-sequence token
    stopped = smashed.generate(ids, max_new_tokens=20, eos_token_id=eos)
    first = int((free[0, 12:] == eos).nonzero()[0])
    assert torch.equal(stopped, free[:, : 12 + first + 1])


def test_a_streamer_gets_the_prompt_then_each_token(tiny_llama: torch.nn.Module) -> None:
    class Recorder:
        def __init__(self) -> None:
            self.chunks: list[list[int]] = []
            self.ended = False

        def put(self, value: torch.Tensor) -> None:
            self.chunks.append(value.flatten().tolist())

        def end(self) -> None:
            self.ended = True

    smashed = smash(tiny_llama, {"static_cache": RUNTIME})
    ids, recorder = prompt(6, seed=6), Recorder()
    out = smashed.generate(ids, max_new_tokens=7, min_new_tokens=7, streamer=recorder)
    assert recorder.chunks == [ids[0].tolist()] + [[t] for t in out[0, 6:].tolist()] and recorder.ended


def test_step_logits_land_in_one_buffer_that_the_next_step_overwrites(tiny_llama: torch.nn.Module) -> None:
    # A step's own output is freed at once; a new one per step, kept across the next step, fragmented
    # glibc's heap under a compiled int8 model (README, "glibc's heap").
    smashed = smash(tiny_llama, {"static_cache": RUNTIME})
    runtime = attached_runtime(smashed.model)
    assert runtime is not None
    ids = prompt(5, seed=7)
    first = runtime.prefill(ids)
    kept = first.clone()
    with torch.no_grad():
        assert torch.allclose(kept, tiny_llama(ids).logits[:, -1], atol=1e-5)  # type: ignore[operator]
    second = runtime.decode(kept.argmax(-1, keepdim=True), 5)
    assert second.data_ptr() == first.data_ptr()
    assert not torch.equal(first, kept)  # overwritten in place: callers clone what they keep


# --- zero recompilations after warm-up ---------------------------------------------------------------


def test_warm_up_compiles_both_graphs_then_no_length_recompiles(
    tiny_llama: torch.nn.Module, eager_compiled: PrunaModel
) -> None:
    assert eager_compiled.metadata["torch_compile"]["warmup_frames_compiled"] == 2  # prefill + decode
    before = compiled_frames()
    for i, (length, new) in enumerate(REQUESTS):
        ids = prompt(length, seed=i)
        with torch.inference_mode() if i % 2 else torch.no_grad():  # the caller's autograd mode is irrelevant
            out = eager_compiled.generate(ids, max_new_tokens=new, min_new_tokens=new)
        assert torch.equal(out, reference(tiny_llama, ids, new)), (length, new)
    assert compiled_frames() - before == 0


@pytest.fixture
def two_threads() -> Any:
    """The process on 2 torch threads for the test (and back to what it was after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_decode_steps_run_on_decode_threads_and_prefill_on_the_process_threads(
    tiny_llama: torch.nn.Module, two_threads: None
) -> None:
    smashed = smash(tiny_llama, {"static_cache": {**RUNTIME, "decode_threads": 1}})
    seen: list[tuple[int, int]] = []  # (tokens in the call, torch threads during it)
    smashed.model.register_forward_pre_hook(
        lambda _, args, kwargs: seen.append((kwargs["input_ids"].shape[1], torch.get_num_threads())),
        with_kwargs=True,
    )
    ids = prompt(21)
    out = smashed.generate(ids, max_new_tokens=6, min_new_tokens=6)
    assert torch.equal(out, reference(tiny_llama, ids, 6))
    assert seen == [(16, 2), (16, 2)] + [(1, 1)] * 5  # two prefill chunks, then decode steps
    assert torch.get_num_threads() == 2  # restored


def test_a_decode_thread_count_compiles_once_then_holds(
    tiny_llama: torch.nn.Module, two_threads: None
) -> None:
    """Dynamo guards on the thread count: warm-up must compile decode on the threads it will run on."""
    config = {"static_cache": {**RUNTIME, "decode_threads": 1}, "torch_compile": {"backend": "eager"}}
    smashed = smash(tiny_llama, config)
    assert smashed.metadata["torch_compile"]["warmup_frames_compiled"] == 2
    before = compiled_frames()
    for i, (length, new) in enumerate(REQUESTS[:4]):
        ids = prompt(length, seed=i)
        out = smashed.generate(ids, max_new_tokens=new, min_new_tokens=new)
        assert torch.equal(out, reference(tiny_llama, ids, new)), (length, new)
    assert compiled_frames() - before == 0


def test_the_garbage_collector_pauses_during_a_generation_only(tiny_llama: torch.nn.Module) -> None:
    smashed = smash(tiny_llama, {"static_cache": RUNTIME})
    seen: list[bool] = []
    smashed.model.register_forward_pre_hook(lambda *_: seen.append(gc.isenabled()))
    smashed.generate(prompt(5), max_new_tokens=4)
    assert seen and not any(seen)
    assert gc.isenabled()
    gc.disable()  # a caller that turned it off keeps it off
    try:
        smashed.generate(prompt(5), max_new_tokens=2)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_decode_threads_are_chosen_by_timing_and_recorded(
    tiny_llama: torch.nn.Module, two_threads: None
) -> None:
    smashed = smash(tiny_llama, {"static_cache": RUNTIME})  # decode_threads 0: timed
    metadata = smashed.metadata["static_cache"]
    timings = metadata["decode_step_ms_by_threads"]
    assert set(timings) == {"1", "2"} and all(t > 0 for t in timings.values())
    fastest = min(timings.values())
    assert metadata["decode_threads"] == min(int(n) for n, t in timings.items() if t <= fastest * 1.1)
    runtime = attached_runtime(smashed.model)
    assert runtime is not None and runtime.spec.decode_threads == metadata["decode_threads"]


@pytest.mark.parametrize(
    ("recorded", "timings", "chosen"),
    [
        (None, {1: 0.0105, 2: 0.010}, 1),  # within 10 % of the fastest: the fewer threads
        (None, {1: 0.012, 2: 0.010}, 2),  # clearly slower on fewer: the faster count
        (2, {1: 0.010, 2: 0.011}, 2),  # within 15 %: the smash-time count (and its graphs) stays
        (2, {1: 0.010, 2: 0.013}, 1),  # clearly slower here: the faster count
        ("2", {1: 0.010, 2: 0.011}, 1),  # not an int (the metadata is untrusted): ignored
        (64, {1: 0.010, 2: 0.011}, 1),  # not a candidate on this machine: ignored
    ],
)
def test_load_keeps_the_recorded_decode_threads_unless_another_is_clearly_faster(
    tiny_llama: torch.nn.Module,
    two_threads: None,
    monkeypatch: pytest.MonkeyPatch,
    recorded: Any,
    timings: dict[int, float],
    chosen: int,
) -> None:
    monkeypatch.setattr(StaticGenerationRuntime, "time_decode_threads", lambda self, candidates: timings)
    algorithm = registry.create("static_cache")
    params = SmashConfig({"static_cache": RUNTIME})["static_cache"]
    ctx = SmashContext("cpu", {"decode_threads": recorded})
    model = algorithm.restore(tiny_llama, params, ctx)
    runtime = attached_runtime(model)
    assert runtime is not None and runtime.spec.decode_threads == chosen == ctx.metadata["decode_threads"]


@pytest.mark.parametrize(
    ("process", "candidates"), [(1, [1]), (2, [1, 2]), (6, [1, 2, 4, 6]), (8, [1, 2, 4, 8])]
)
def test_decode_thread_candidates(process: int, candidates: list[int]) -> None:
    assert thread_candidates(process) == candidates


def test_each_model_compiles_against_its_own_recompile_budget(make_tiny_llama: Any) -> None:
    """Dynamo's recompile_limit counts per code object; nn.Module.compile() shares one among all models."""
    config = {"static_cache": RUNTIME, "torch_compile": {"backend": "eager"}}
    with torch._dynamo.config.patch(recompile_limit=2):
        first = smash(make_tiny_llama(), config)
        second = smash(make_tiny_llama(hidden_size=32, intermediate_size=96), config)
    for smashed in (first, second):
        assert smashed.metadata["torch_compile"]["warmup_frames_compiled"] == 2  # not silently eager


def test_the_recompile_counter_sees_transformers_generate_recompiling(tiny_llama: torch.nn.Module) -> None:
    """Control for the test above: the hand-assembled way (compiled forward + generate) does recompile."""
    tiny_llama.compile(backend="eager", dynamic=False)
    before = compiled_frames()
    for length, new in [(8, 4), (20, 9)]:
        reference(tiny_llama, prompt(length), new)
    assert compiled_frames() - before >= 3


def test_save_load_warms_up_and_generates_the_same(eager_compiled: PrunaModel, tmp_path: Path) -> None:
    ids = prompt(27)
    before_save = eager_compiled.generate(ids, max_new_tokens=40)
    eager_compiled.save_pretrained(tmp_path)
    loaded = PrunaModel.from_pretrained(tmp_path)
    runtime = attached_runtime(loaded.model)
    assert runtime is not None and runtime.last_warmup is not None  # warmed up at load
    # dynamo guards on module structure, not identity: in this process the loaded model reuses the graphs
    assert runtime.last_warmup.frames_compiled in (0, 2)
    frames = compiled_frames()
    assert torch.equal(loaded.generate(ids, max_new_tokens=40), before_save)
    assert loaded.generate(prompt(90, seed=1), max_new_tokens=38).shape == (1, 128)
    assert compiled_frames() - frames == 0
    assert set(loaded.model.state_dict()) == set(eager_compiled.model.state_dict())  # compiled in place


# --- declarations and bad input --------------------------------------------------------------------------


def test_static_cache_runs_after_quantizers_and_before_the_compiler() -> None:
    config = SmashConfig({"torch_compile": {}, "static_cache": {}, "half": {}})
    assert determine_algorithm_order(config) == ["half", "static_cache", "torch_compile"]


def test_cache_size_must_be_a_multiple_of_the_chunk() -> None:
    with pytest.raises(
        HyperparameterError, match=r"static_cache.max_cache_len = 100 .*multiple of prefill_chunk \(64\)"
    ):
        SmashConfig({"static_cache": {"max_cache_len": 100}})


def test_inductor_modes_need_the_inductor_backend() -> None:
    with pytest.raises(HyperparameterError, match=r"torch_compile.mode = 'max-autotune' .*backend 'eager'"):
        SmashConfig({"torch_compile": {"backend": "eager", "mode": "max-autotune"}})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"input_ids": prompt(100), "max_new_tokens": 29},
            r"needs 129 cache positions.*max_cache_len is 128",
        ),
        ({"input_ids": prompt(4, rows=2), "max_new_tokens": 3}, r"batch of 2 prompts exceeds .*batch_size 1"),
        ({"input_ids": prompt(4), "num_beams": 2}, r"num_beams are not supported"),
        ({"input_ids": prompt(4), "max_new_tokens": 0}, r"max_new_tokens=0"),
        (
            {"input_ids": prompt(4), "attention_mask": torch.tensor([[0, 1, 1, 1]])},
            r"padded prompts .* not supported",
        ),
        ({"input_ids": torch.zeros(3, dtype=torch.long)}, r"\(batch, length\) tensor, got \(3,\)"),
        ({"input_ids": prompt(4), "do_sample": True, "temperature": 0.0}, r"temperature must be > 0"),
    ],
)
def test_requests_the_runtime_cannot_serve_are_refused(
    tiny_llama: torch.nn.Module, kwargs: dict[str, Any], message: str
) -> None:
    smashed = smash(tiny_llama, {"static_cache": RUNTIME})
    with pytest.raises(GenerationInputError, match=message):
        smashed.generate(**kwargs)


def test_static_cache_does_not_apply_to_a_model_without_generate() -> None:
    from smash.errors import NotApplicableError

    with pytest.raises(NotApplicableError, match=r"static_cache.*transformers generative model"):
        smash(torch.nn.Linear(4, 4), {"static_cache": {}})


# --- compile cache archive -------------------------------------------------------------------------------


@pytest.fixture
def packed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_llama: torch.nn.Module) -> Path:
    """A saved folder whose archive holds a fake compile directory (two files and a lock)."""
    monkeypatch.setenv("SMASH_COMPILE_CACHE_DIR", str(tmp_path / "root_a"))
    source = compile_cache.directory_for("k1")
    (source / "fxgraph" / "ab").mkdir(parents=True)
    (source / "fxgraph" / "ab" / "entry").write_bytes(b"graph")
    (source / "kernel.so").write_bytes(b"\x7fELF")
    (source / "locks").mkdir()
    (source / "locks" / "x.lock").write_text("")
    tiny_llama.__dict__[compile_cache.KEY_ATTR] = "k1"
    folder = tmp_path / "saved"
    folder.mkdir()
    assert compile_cache.write_archive(tiny_llama, folder) == folder / compile_cache.ARCHIVE_FILE
    monkeypatch.setenv("SMASH_COMPILE_CACHE_DIR", str(tmp_path / "root_b"))
    return folder


def test_archive_is_unpacked_when_the_environment_matches(packed: Path) -> None:
    assert compile_cache.install_archive(packed, torch.device("cpu")) == "k1"
    target = compile_cache.directory_for("k1")
    assert (target / "fxgraph" / "ab" / "entry").read_bytes() == b"graph"
    assert (target / "kernel.so").read_bytes() == b"\x7fELF"
    assert not (target / "locks").exists()


def test_unpacking_next_to_kernels_this_process_compiled_leaves_them_untouched(packed: Path) -> None:
    """Smash, save, load in one process (the sync does): the key's directory already holds kernels that
    may be mapped into memory. Rewriting them in place crashed the process; only missing files move in."""
    target = compile_cache.directory_for("k1")
    target.mkdir(parents=True)
    (target / "kernel.so").write_bytes(b"mapped")
    assert compile_cache.install_archive(packed, torch.device("cpu")) == "k1"
    assert (target / "kernel.so").read_bytes() == b"mapped"  # not written over
    assert (target / "fxgraph" / "ab" / "entry").read_bytes() == b"graph"
    assert (target / ".complete").is_file()


def test_archive_from_another_environment_is_ignored(packed: Path) -> None:
    manifest = json.loads((packed / compile_cache.MANIFEST_FILE).read_text())
    manifest["environment"]["torch"] = "1.0.0"
    (packed / compile_cache.MANIFEST_FILE).write_text(json.dumps(manifest))
    assert compile_cache.install_archive(packed, torch.device("cpu")) is None
    assert not compile_cache.directory_for("k1").exists()


def test_archive_with_a_wrong_checksum_or_unsafe_member_is_ignored(packed: Path) -> None:
    archive = packed / compile_cache.ARCHIVE_FILE
    with tarfile.open(archive, "a") as tar:  # a member escaping the cache directory
        info = tarfile.TarInfo("../escape")
        tar.addfile(info)
    assert compile_cache.install_archive(packed, torch.device("cpu")) is None  # checksum no longer matches
    manifest = json.loads((packed / compile_cache.MANIFEST_FILE).read_text())
    manifest["sha256"] = compile_cache._sha256(archive)
    (packed / compile_cache.MANIFEST_FILE).write_text(json.dumps(manifest))
    assert compile_cache.install_archive(packed, torch.device("cpu")) is None  # tar's data filter refuses it
    assert not (compile_cache.cache_root() / "escape").exists()


def test_archive_key_is_never_used_as_a_path_when_malformed(packed: Path) -> None:
    manifest = json.loads((packed / compile_cache.MANIFEST_FILE).read_text())
    manifest["key"] = "../../etc"
    (packed / compile_cache.MANIFEST_FILE).write_text(json.dumps(manifest))
    assert compile_cache.install_archive(packed, torch.device("cpu")) is None


# --- inductor, for real ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inductor_smashed(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, PrunaModel, Path]:
    """The tiny llama smashed with inductor (compiled once for the module), and its saved folder."""
    from tiny_models import build_tiny_llama

    base = build_tiny_llama()
    folder = tmp_path_factory.mktemp("saved")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SMASH_COMPILE_CACHE_DIR", str(tmp_path_factory.mktemp("compile_cache")))
        # One decode thread, not chosen by timing: a load that timed another count as clearly faster on a
        # noisy machine would key its graphs apart from the saved ones (the shapes include the count).
        runtime = {**RUNTIME, "decode_threads": 1}
        smashed = smash(base, {"static_cache": runtime, "torch_compile": {}})
        smashed.save_pretrained(folder)
    return base, smashed, folder


@pytest.mark.slow
def test_inductor_runtime_matches_eager_with_zero_recompiles(
    inductor_smashed: tuple[torch.nn.Module, PrunaModel, Path],
) -> None:
    base, smashed, _ = inductor_smashed
    runtime = attached_runtime(smashed.model)
    assert runtime is not None
    before = compiled_frames()
    ids = prompt(37, seed=9)
    with torch.no_grad():
        compiled_logits = runtime.prefill(ids)
        eager_logits = base(ids).logits[:, -1, :]
    torch.testing.assert_close(compiled_logits, eager_logits, atol=1e-4, rtol=1e-4)
    for i, (length, new) in enumerate(REQUESTS):
        ids = prompt(length, seed=i)
        out = smashed.generate(ids, max_new_tokens=new, min_new_tokens=new)
        assert torch.equal(out, reference(base, ids, new)), (length, new)
    assert compiled_frames() - before == 0


_LOAD_SCRIPT = """
import json, sys, time, torch
from torch._dynamo.utils import counters
from smash import PrunaModel
from smash.runtime import compiled_frames
start = time.perf_counter()
model = PrunaModel.from_pretrained(sys.argv[1])
ids = torch.randint(0, 256, (1, 21), generator=torch.Generator().manual_seed(0))
out = model.generate(ids, max_new_tokens=30, min_new_tokens=30)
from smash.runtime import attached_runtime
graphs = attached_runtime(model.model).graphs
print(json.dumps({"seconds": time.perf_counter() - start, "frames": compiled_frames(),
                  "graphs": type(graphs.decode).__name__ if graphs else None,
                  "inductor": dict(counters["inductor"]), "tokens": out.tolist()}))
"""


def _load_in_fresh_process(folder: Path, scratch: Path) -> dict[str, Any]:
    """Load in a new interpreter whose inductor and smash caches are empty: another machine, same setup."""
    env = {
        **os.environ,
        "SMASH_COMPILE_CACHE_DIR": str(scratch / "smash"),
        "TORCHINDUCTOR_CACHE_DIR": str(scratch / "inductor"),
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_SCRIPT, str(folder)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.slow
def test_saved_compile_cache_skips_compiling_in_a_fresh_process(
    inductor_smashed: tuple[torch.nn.Module, PrunaModel, Path], tmp_path: Path
) -> None:
    base, _, folder = inductor_smashed
    assert (folder / compile_cache.ARCHIVE_FILE).is_file()
    result = _load_in_fresh_process(folder, tmp_path)
    assert result["graphs"] == "AOTCompiledFunction"  # both graphs came precompiled from the archive...
    assert result["frames"] == 0  # ...so dynamo traced nothing...
    assert result["inductor"].get("fxgraph_cache_miss", 0) == 0  # ...and inductor compiled nothing
    ids = torch.randint(0, 256, (1, 21), generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.tensor(result["tokens"]), reference(base, ids, 30))


@pytest.mark.slow
def test_a_damaged_precompiled_graph_is_captured_again(
    inductor_smashed: tuple[torch.nn.Module, PrunaModel, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, _, folder = inductor_smashed
    monkeypatch.setenv("SMASH_COMPILE_CACHE_DIR", str(tmp_path / "cache"))
    key = compile_cache.install_archive(folder, torch.device("cpu"))
    assert key is not None
    damaged = compile_cache.directory_for(key) / precompiled.AOT_DIR / "decode.bin"
    damaged.write_bytes(b"not a compiled function")
    loaded = PrunaModel.from_pretrained(folder)
    runtime = attached_runtime(loaded.model)
    assert runtime is not None and runtime.graphs is not None
    assert damaged.stat().st_size > 1000  # captured again and saved over the damaged file
    ids = prompt(21, seed=3)
    assert torch.equal(loaded.generate(ids, max_new_tokens=12, min_new_tokens=12), reference(base, ids, 12))


@pytest.mark.slow
def test_a_quantized_model_reloads_its_precompiled_graphs_in_the_process_that_smashed_it(
    tiny_llama: torch.nn.Module,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """int8 (the CPU Llama default) with inductor: a dtype attribute on the quantized layers made every
    precompiled graph unloadable, and unpacking the archive over loaded kernels crashed the process."""
    monkeypatch.setenv("SMASH_COMPILE_CACHE_DIR", str(tmp_path / "cache"))
    smashed = smash(tiny_llama, {"int8_weight": {}, "static_cache": RUNTIME, "torch_compile": {}})
    assert smashed.metadata["torch_compile"]["precompiled_graphs"] == "captured"
    smashed.save_pretrained(tmp_path / "saved")
    frames = compiled_frames()
    with caplog.at_level(logging.WARNING, logger="smash.precompiled"):
        loaded = PrunaModel.from_pretrained(tmp_path / "saved")
    assert not [r for r in caplog.records if r.name == "smash.precompiled"]  # loaded, not captured again
    assert compiled_frames() == frames
    runtime = attached_runtime(loaded.model)
    assert runtime is not None and type(runtime.graphs.decode).__name__ == "AOTCompiledFunction"  # type: ignore[union-attr]
    ids = prompt(21, seed=4)
    assert torch.equal(loaded.generate(ids, max_new_tokens=12), smashed.generate(ids, max_new_tokens=12))


def test_the_probe_decodes_a_fixed_token_whatever_the_prefill_predicts(tiny_llama: torch.nn.Module) -> None:
    """Graphs are compared on the same inputs: a near-tie in the prefill logits must not change the
    decode input of one side only."""
    smashed = smash(tiny_llama, {"static_cache": RUNTIME})
    runtime = attached_runtime(smashed.model)
    assert runtime is not None
    seen: list[torch.Tensor] = []
    smashed.model.register_forward_pre_hook(
        lambda _, args, kwargs: seen.append(kwargs["input_ids"].clone()), with_kwargs=True
    )
    runtime.probe(precompiled.EAGER)
    assert seen[-1].tolist() == [[1]]


def test_graphs_that_disagree_with_the_eager_model_are_refused(tiny_llama: torch.nn.Module) -> None:
    runtime = attached_runtime(smash(tiny_llama, {"static_cache": RUNTIME}).model)
    assert runtime is not None
    assert precompiled.agrees_with_eager(runtime, precompiled.EAGER)

    def off_by_one(*args: Any) -> torch.Tensor:
        return precompiled.EAGER.decode(*args) + 1.0

    assert not precompiled.agrees_with_eager(
        runtime, precompiled.Graphs(precompiled.EAGER.prefill, off_by_one)
    )


@pytest.mark.parametrize(("compute_dtype", "tolerance"), [("float32", 1e-2), ("bfloat16", 5e-2)])
def test_the_probe_allows_half_precision_rounding_but_not_wrong_logits(
    tiny_llama: torch.nn.Module, compute_dtype: str, tolerance: float
) -> None:
    """Layers computing in bfloat16 round differently compiled and eager (1.3% of the largest logit on
    SmolLM2 hqq 8-bit); graphs that far off must still be used there, and never a wrong graph."""
    config = {
        "hqq": {"weight_bits": 8, "group_size": 64, "compute_dtype": compute_dtype},
        "static_cache": RUNTIME,
    }
    runtime = attached_runtime(smash(tiny_llama, config).model)
    assert runtime is not None
    assert precompiled.probe_tolerance(runtime.model) == tolerance

    def decode_off_by(fraction: float) -> precompiled.Graphs:
        def decode(*args: Any) -> torch.Tensor:
            logits = precompiled.EAGER.decode(*args)
            return logits + fraction * float(logits.abs().max().clamp(min=1.0))

        return precompiled.Graphs(precompiled.EAGER.prefill, decode)

    assert precompiled.agrees_with_eager(runtime, decode_off_by(0.5 * tolerance))
    assert not precompiled.agrees_with_eager(runtime, decode_off_by(2 * tolerance))
    assert not precompiled.agrees_with_eager(runtime, decode_off_by(1.0))  # off by the logits' own order


def test_load_with_a_foreign_compile_cache_falls_back_to_compiling(
    eager_compiled: PrunaModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMASH_COMPILE_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "saved"
    eager_compiled.save_pretrained(folder)
    assert not (folder / compile_cache.ARCHIVE_FILE).exists()  # the eager backend has nothing to keep
    (tmp_path / "foreign").mkdir()
    with tarfile.open(folder / compile_cache.ARCHIVE_FILE, "w") as tar:
        tar.add(tmp_path / "foreign", arcname="x")
    foreign = {"format_version": 1, "key": "abc", "sha256": "0", "environment": {"torch": "0"}}
    (folder / compile_cache.MANIFEST_FILE).write_text(json.dumps(foreign))
    ids = prompt(30)
    loaded = PrunaModel.from_pretrained(folder)
    assert not compile_cache.directory_for("abc").exists()
    assert torch.equal(
        loaded.generate(ids, max_new_tokens=20), eager_compiled.generate(ids, max_new_tokens=20)
    )


def test_the_saved_key_is_reused_only_for_graphs_of_the_same_shapes_and_threads() -> None:
    env = compile_cache.environment(torch.device("cpu"))
    shapes = {"max_cache_len": 128, "batch_size": 1, "prefill_chunk": 16, "decode_threads": 1}
    saved = {"compile_cache_key": "abc123", "compile_environment": env, "compile_shapes": shapes}
    assert compile_cache.saved_key(saved, env, shapes) == "abc123"
    assert compile_cache.saved_key(saved, env, {**shapes, "decode_threads": 2}) is None
    assert compile_cache.saved_key({**saved, "compile_cache_key": "../x"}, env, shapes) is None


def test_cache_key_follows_structure_not_weight_values(make_tiny_llama: Any) -> None:
    env = compile_cache.environment(torch.device("cpu"))
    params, shapes = {"backend": "inductor"}, {"max_cache_len": 128}
    first, second = make_tiny_llama(seed=0), make_tiny_llama(seed=1)
    half = smash(first, {"half": {"dtype": "bfloat16"}}).model
    key = compile_cache.model_key(first, params, shapes, env)
    assert compile_cache.model_key(second, params, shapes, env) == key  # other weights, same graphs
    assert compile_cache.model_key(half, params, shapes, env) != key  # other dtypes, other graphs
    assert compile_cache.model_key(first, params, {"max_cache_len": 256}, env) != key
    assert compile_cache.model_key(first, params, shapes, {**env, "torch": "0"}) != key
