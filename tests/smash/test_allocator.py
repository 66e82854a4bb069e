"""glibc's mmap threshold held fixed by the static-cache runtime on CPU, so a decode loop's per-step
buffers do not fragment the heap. Each case runs in a fresh interpreter: the setting is process-wide
and made once. glibc's own behaviour is observed through ``mallinfo2`` (bytes in mmapped blocks)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

# Frees a 1 MiB mmapped block, then allocates 1 MiB again and says whether glibc mapped it (a held
# threshold) or took it from the heap (glibc raised its threshold to 1 MiB on the free).
PROBE = """
import ctypes, ctypes.util
libc = ctypes.CDLL(ctypes.util.find_library("c"))
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(1 << 20))
block = libc.malloc(1 << 20)
print("mapped" if libc.mallinfo2().hblkhd >= 1 << 20 else "heap")
"""


def run(code: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in env and k != "MALLOC_MMAP_THRESHOLD_"}
    environ.update({k: v for k, v in env.items() if v is not None})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )


ATTACH = """
from smash.runtime import attach_runtime, RuntimeSpec
from tiny_models import build_tiny_llama
attach_runtime(build_tiny_llama(), RuntimeSpec(32, 1, 8))
from smash import allocator
print("held", allocator._held)
"""


def with_tests_path(code: str) -> str:
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return f"import sys; sys.path.append({tests!r})\n" + textwrap.dedent(code)


@glibc_only
def test_glibc_moves_a_freed_block_size_to_the_heap_unless_the_runtime_holds_the_threshold() -> None:
    plain = run(PROBE)
    assert plain.stdout.split() == ["heap"], plain.stderr  # the fragmenting default this guards against
    held = run(with_tests_path(ATTACH) + PROBE)
    assert held.stdout.split() == ["held", str(128 * 1024), "mapped"], held.stderr


@glibc_only
@pytest.mark.parametrize(
    ("env", "held"),
    [
        ({"SMASH_MALLOC_MMAP_THRESHOLD": "off"}, "None"),
        ({"SMASH_MALLOC_MMAP_THRESHOLD": "262144"}, "262144"),
        ({"MALLOC_MMAP_THRESHOLD_": "65536"}, "None"),  # the user tuned glibc already: left alone
    ],
)
def test_the_threshold_can_be_chosen_or_left_alone(env: dict[str, str], held: str) -> None:
    result = run(with_tests_path(ATTACH), **env)
    assert result.stdout.split() == ["held", held], result.stderr


@pytest.mark.parametrize("value", ["lots", "-5", str(64 * 1024 * 1024)])
def test_a_bad_threshold_is_a_typed_error_naming_the_variable(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from smash.allocator import requested_threshold
    from smash.errors import AllocatorSettingError

    monkeypatch.setenv("SMASH_MALLOC_MMAP_THRESHOLD", value)
    with pytest.raises(AllocatorSettingError, match="SMASH_MALLOC_MMAP_THRESHOLD") as info:
        requested_threshold()
    assert "or off" in str(info.value)
