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
import shutil
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
    sealed_dir,
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


# --- planted compile caches: nothing from a model folder runs -----------------------------------------


def plant_archive(folder: Path, key: str, canary: Path) -> None:
    """What an attacker ships: an old-style compile archive whose precompiled graphs are pickles that
    touch ``canary`` when unpickled, with a manifest that matches this machine's environment and the
    archive's checksum, under the key the model's metadata names."""
    import hashlib
    import io
    import pickle

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (os.system, (f"touch {canary}",))

    archive = folder / compile_cache.ARCHIVE_FILE
    with tarfile.open(archive, "w") as tar:
        for name in ("aot/prefill.bin", "aot/decode.bin", "fxgraph/ab/entry"):
            data = pickle.dumps(Payload())
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    manifest = {
        "format_version": 1,
        "key": key,
        "environment": compile_cache.environment(torch.device("cpu")),
        "sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
        "bytes": archive.stat().st_size,
    }
    (folder / compile_cache.MANIFEST_FILE).write_text(json.dumps(manifest))


def test_a_planted_archive_in_a_model_folder_is_ignored_and_named(
    eager_compiled: PrunaModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("SMASH_COMPILE_CACHE_DIR", str(tmp_path / "cache"))
    folder = eager_compiled.save_pretrained(tmp_path / "saved")
    assert not (folder / compile_cache.ARCHIVE_FILE).exists()  # save_pretrained writes no code
    canary = tmp_path / "canary"
    plant_archive(folder, "0" * 32, canary)
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with caplog.at_level(logging.WARNING, logger="smash.model"):
        loaded = PrunaModel.from_pretrained(folder)
    warning = " ".join(r.getMessage() for r in caplog.records if r.name == "smash.model")
    assert compile_cache.ARCHIVE_FILE in warning and "pytorch_model.bin" in warning and "ignored" in warning
    assert not canary.exists() and not compile_cache.directory_for("0" * 32).exists()
    ids = prompt(30)
    assert torch.equal(
        loaded.generate(ids, max_new_tokens=20), eager_compiled.generate(ids, max_new_tokens=20)
    )
    loaded.save_pretrained(folder)  # saving over the folder drops the planted archive
    assert not (folder / compile_cache.ARCHIVE_FILE).exists()


KEY = "0123456789abcdef" * 2


def sealed_cache(monkeypatch: pytest.MonkeyPatch, root: Path) -> Path:
    """A key's directory as a compile leaves it: files written inside ``compiling_into``, then sealed."""
    monkeypatch.setenv("SMASH_COMPILE_CACHE_DIR", str(root))
    directory = compile_cache.directory_for(KEY)
    with compile_cache.compiling_into(KEY):
        (directory / "aot").mkdir(parents=True)
        (directory / "aot" / "decode.bin").write_bytes(b"graph")
        (directory / "kernel.so").write_bytes(b"\x7fELF")
    return directory


def test_a_sealed_compile_directory_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = sealed_cache(monkeypatch, tmp_path / "root")
    with compile_cache.compiling_into(KEY):
        assert (directory / "aot" / "decode.bin").read_bytes() == b"graph"
    key_file = tmp_path / "root" / sealed_dir.KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600


def _add_file(directory: Path, _: Path) -> None:
    (directory / "aot" / "prefill.bin").write_bytes(b"planted")


def _change_file(directory: Path, _: Path) -> None:
    (directory / "kernel.so").write_bytes(b"planted")


def _link_out(directory: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_bytes(b"planted")
    (directory / "aot" / "prefill.bin").symlink_to(tmp_path / "elsewhere")


def _copy_from_another_machine(directory: Path, tmp_path: Path) -> None:
    """The same files and seal, made under another cache root's key (another machine, or a hand)."""
    key_file = directory.parent / sealed_dir.KEY_FILE
    key_file.unlink()
    sealed_dir.secret_key(directory.parent)  # a new key: the old seal no longer verifies


def _forge_seal(directory: Path, _: Path) -> None:
    seal = json.loads((directory / sealed_dir.SEAL_FILE).read_text())
    (directory / "aot" / "prefill.bin").write_bytes(b"planted")
    seal["files"]["aot/prefill.bin"] = "0" * 64
    (directory / sealed_dir.SEAL_FILE).write_text(json.dumps(seal))


@pytest.mark.parametrize(
    "tamper", [_add_file, _change_file, _link_out, _copy_from_another_machine, _forge_seal]
)
def test_a_tampered_compile_directory_is_removed_before_anything_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tamper: Any
) -> None:
    directory = sealed_cache(monkeypatch, tmp_path / "root")
    tamper(directory, tmp_path)
    with caplog.at_level(logging.WARNING, logger="smash.sealed_dir"), compile_cache.compiling_into(KEY):
        assert directory.is_dir() and not any(directory.iterdir())  # emptied: torch compiles afresh
        assert precompiled._load(directory / precompiled.AOT_DIR) is None
    assert "removing" in caplog.text
    assert (tmp_path / "elsewhere").exists() or tamper is not _link_out  # a link's target is not touched


def test_planted_pickles_in_the_local_cache_are_never_unpickled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files dropped into the cache by someone without the key (an extraction elsewhere, another user)."""
    monkeypatch.setenv("SMASH_COMPILE_CACHE_DIR", str(tmp_path / "root"))
    canary = tmp_path / "canary"
    staging = tmp_path / "staging"
    staging.mkdir()
    plant_archive(staging, KEY, canary)
    with tarfile.open(staging / compile_cache.ARCHIVE_FILE) as tar:
        tar.extractall(compile_cache.directory_for(KEY), filter="data")
    with compile_cache.compiling_into(KEY):
        assert precompiled._load(compile_cache.directory_for(KEY) / precompiled.AOT_DIR) is None
    assert not canary.exists()


def test_a_cache_root_key_others_can_read_disables_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    directory = sealed_cache(monkeypatch, tmp_path / "root")
    (tmp_path / "root" / sealed_dir.KEY_FILE).chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="smash.compile_cache"), compile_cache.compiling_into(KEY):
        pass
    assert "compile cache not used" in caplog.text and "0600" in caplog.text
    assert (directory / "kernel.so").exists()  # left alone, and not read


def test_a_malformed_key_is_never_used_as_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMASH_COMPILE_CACHE_DIR", str(tmp_path / "root"))
    with pytest.raises(ValueError, match="32 hex digits"), compile_cache.compiling_into("../../etc"):
        pass


# --- inductor, for real ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inductor_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The compile cache root the module's inductor smash compiled into (this machine's, sealed)."""
    return tmp_path_factory.mktemp("compile_cache")


@pytest.fixture(scope="module")
def inductor_smashed(
    tmp_path_factory: pytest.TempPathFactory, inductor_cache: Path
) -> tuple[torch.nn.Module, PrunaModel, Path]:
    """The tiny llama smashed with inductor (compiled once for the module), and its saved folder."""
    from tiny_models import build_tiny_llama

    base = build_tiny_llama()
    folder = tmp_path_factory.mktemp("saved")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SMASH_COMPILE_CACHE_DIR", str(inductor_cache))
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


def _load_in_fresh_process(
    target: str, scratch: Path, *, compile_cache_dir: Path | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Load in a new interpreter with an empty inductor cache and the given (else an empty) smash cache."""
    env = {
        **os.environ,
        "SMASH_COMPILE_CACHE_DIR": str(compile_cache_dir or scratch / "smash"),
        "TORCHINDUCTOR_CACHE_DIR": str(scratch / "inductor"),
        "OMP_WAIT_POLICY": "PASSIVE",
        **(env or {}),
    }
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_SCRIPT, target], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.slow
def test_this_machines_compile_cache_skips_compiling_in_a_fresh_process(
    inductor_smashed: tuple[torch.nn.Module, PrunaModel, Path], inductor_cache: Path, tmp_path: Path
) -> None:
    base, _, folder = inductor_smashed
    result = _load_in_fresh_process(str(folder), tmp_path, compile_cache_dir=inductor_cache)
    assert result["graphs"] == "AOTCompiledFunction"  # both graphs came precompiled from the cache...
    assert result["frames"] == 0  # ...so dynamo traced nothing...
    assert result["inductor"].get("fxgraph_cache_miss", 0) == 0  # ...and inductor compiled nothing
    ids = torch.randint(0, 256, (1, 21), generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.tensor(result["tokens"]), reference(base, ids, 30))


@pytest.mark.slow
def test_a_planted_archive_runs_nothing_from_a_folder_or_a_fully_downloaded_repo(
    inductor_smashed: tuple[torch.nn.Module, PrunaModel, Path], tmp_path: Path
) -> None:
    """The attack that worked before: an archive of pickles beside the weights, matching this machine's
    environment and the key the metadata names, in a local folder and in a Hub repo that a user fetched
    whole (``hf download``). A fresh machine (empty caches) loads both; the canary must stay absent."""
    from huggingface_hub import HfApi, snapshot_download

    from pruna_hub.hubstore import LocalHub

    base, _, saved = inductor_smashed
    folder = tmp_path / "planted"
    shutil.copytree(saved, folder)
    key = json.loads((folder / "smash_artifact.json").read_text())["metadata"]["torch_compile"]
    canary = tmp_path / "canary"
    plant_archive(folder, key["compile_cache_key"], canary)
    ids = torch.randint(0, 256, (1, 21), generator=torch.Generator().manual_seed(0))
    result = _load_in_fresh_process(str(folder), tmp_path / "a")
    assert not canary.exists()
    assert torch.equal(torch.tensor(result["tokens"]), reference(base, ids, 30))

    hf_env = {"HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    with LocalHub(tmp_path / "store").serve() as endpoint, pytest.MonkeyPatch.context() as mp:
        mp.setattr("huggingface_hub.constants.HF_HUB_DISABLE_XET", True)
        HfApi(endpoint=endpoint).create_repo("PrunaAI/planted")
        HfApi(endpoint=endpoint).upload_folder(repo_id="PrunaAI/planted", folder_path=folder)
        snapshot = Path(
            snapshot_download("PrunaAI/planted", endpoint=endpoint, cache_dir=tmp_path / "hf" / "hub")
        )
    assert (snapshot / compile_cache.ARCHIVE_FILE).is_file()  # the user's full download has it
    result = _load_in_fresh_process("PrunaAI/planted", tmp_path / "b", env=hf_env)
    assert not canary.exists()
    assert torch.equal(torch.tensor(result["tokens"]), reference(base, ids, 30))


@pytest.mark.slow
def test_a_damaged_precompiled_graph_is_compiled_again(
    inductor_smashed: tuple[torch.nn.Module, PrunaModel, Path],
    inductor_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, smashed, folder = inductor_smashed
    shutil.copytree(inductor_cache, tmp_path / "cache")
    monkeypatch.setenv("SMASH_COMPILE_CACHE_DIR", str(tmp_path / "cache"))
    key = smashed.metadata["torch_compile"]["compile_cache_key"]
    damaged = compile_cache.directory_for(key) / precompiled.AOT_DIR / "decode.bin"
    damaged.write_bytes(b"not a compiled function")
    loaded = PrunaModel.from_pretrained(folder)
    runtime = attached_runtime(loaded.model)
    assert runtime is not None and runtime.graphs is not None
    assert damaged.stat().st_size > 1000  # the directory failed its seal: compiled again and saved anew
    secret = sealed_dir.secret_key(tmp_path / "cache")
    assert sealed_dir.verify(compile_cache.directory_for(key), secret) is None
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
    precompiled graph unloadable (and an archive unpacked over loaded kernels once crashed the process)."""
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


def test_the_saved_key_is_reused_only_for_graphs_of_the_same_shapes_and_threads() -> None:
    env = compile_cache.environment(torch.device("cpu"))
    shapes = {"max_cache_len": 128, "batch_size": 1, "prefill_chunk": 16, "decode_threads": 1}
    saved = {"compile_cache_key": KEY, "compile_environment": env, "compile_shapes": shapes}
    assert compile_cache.saved_key(saved, env, shapes) == KEY
    assert compile_cache.saved_key(saved, env, {**shapes, "decode_threads": 2}) is None
    assert compile_cache.saved_key({**saved, "compile_cache_key": "../x"}, env, shapes) is None
    assert (
        compile_cache.saved_key({**saved, "compile_cache_key": "\u0661" * 32}, env, shapes) is None
    )  # isalnum()


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
