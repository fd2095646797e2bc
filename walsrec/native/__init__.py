"""Native code, built on first use: the fused WALS row solver and the ranking kernels.

- `wals_ops.cc`: the fused WALS row solver, one TensorFlow custom op (`load()`).
- `kernels.cc`: plain C++ selection kernels without TensorFlow (top-k of score blocks with the
  seen items excluded from the CSR arrays, top-n of CSR rows), loaded with ctypes
  (`kernels()`); evaluation, batch inference, serving and the item-item model use them, and
  fall back to NumPy (same results) when they can't be built.

TensorFlow's pip package ships the headers and the framework library that custom ops link
against, so the op is compiled here, for this TensorFlow and this CPU, the way
`torch.utils.cpp_extension` builds PyTorch extensions: once, into a cache folder
(`$WALSREC_NATIVE_CACHE`, else `$XDG_CACHE_HOME/walsrec/native`, else `~/.cache/walsrec/native`),
under a file lock so parallel tuning workers build it once. `./setup.sh` builds it ahead of time
(`python -m walsrec.native`). The library's name holds a hash of the source, the TensorFlow
version, the compiler flags and the CPU, so a change of any of them builds a new one.

Without a C++ compiler the build fails with a clear `NativeBuildError`; WALS then falls back to
the TensorFlow-op solvers (`kernel: auto`) or stops (`kernel: fused`).
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from walsrec.errors import WalsrecError

__all__ = ["NativeBuildError", "build", "build_kernels", "cache_dir", "kernels", "load"]

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("wals_ops.cc")
KERNELS_SOURCE = Path(__file__).with_name("kernels.cc")
# -march=native: AVX-512 on the machines this runs on. avx512fp16 is off because Eigen's FP16
# packet code does not compile with GCC 12. -fopenmp-simd honours the kernel's `omp simd`
# reduction pragmas (vectorized dot products) without OpenMP's runtime or -ffast-math.
_OPTIMIZATION_FLAGS = ("-O3", "-march=native", "-mno-avx512fp16", "-fopenmp-simd")
_X86_ONLY_FLAGS = ("-mno-avx512fp16",)


class NativeBuildError(WalsrecError):
    """The fused solver could not be compiled or loaded."""


def cache_dir() -> Path:
    """Where the compiled library is kept."""
    if os.environ.get("WALSREC_NATIVE_CACHE"):
        return Path(os.environ["WALSREC_NATIVE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "walsrec" / "native"


def _compiler() -> str:
    for candidate in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if candidate and shutil.which(candidate):
            return candidate
    raise NativeBuildError(
        "no C++ compiler found (set CXX, or install g++) to build the fused WALS solver"
    )


def _cpu_signature() -> str:
    """The CPU model and flags: -march=native code may not run on another CPU."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = [line for line in lines if line.startswith(("model name", "flags"))][:2]
    return "\n".join(wanted) or platform.machine()


def _flags() -> list[str]:
    flags = list(_OPTIMIZATION_FLAGS)
    if platform.machine() not in ("x86_64", "AMD64"):
        flags = [flag for flag in flags if flag not in _X86_ONLY_FLAGS]
    return flags


def _command(output: Path) -> list[str]:
    from walsrec.tensorflow_import import import_tensorflow

    tf = import_tensorflow()

    return [
        _compiler(),
        "-shared",
        "-fPIC",
        *_flags(),
        str(SOURCE),
        "-o",
        str(output),
        *tf.sysconfig.get_compile_flags(),
        *tf.sysconfig.get_link_flags(),
    ]


def _kernels_command(output: Path) -> list[str]:
    return [
        _compiler(),
        "-shared",
        "-fPIC",
        "-std=c++17",
        "-pthread",
        *_flags(),
        str(KERNELS_SOURCE),
        "-o",
        str(output),
    ]


def _library_path() -> Path:
    from walsrec.tensorflow_import import import_tensorflow

    tf = import_tensorflow()

    key = hashlib.sha256()
    key.update(SOURCE.read_bytes())
    key.update(tf.__version__.encode())
    key.update(" ".join(_OPTIMIZATION_FLAGS).encode())
    key.update(_cpu_signature().encode())
    key.update(sys.version.encode())
    return cache_dir() / f"wals_ops-{key.hexdigest()[:16]}.so"


def _kernels_path() -> Path:
    key = hashlib.sha256()
    key.update(KERNELS_SOURCE.read_bytes())
    key.update(" ".join(_kernels_command(Path("out"))[1:]).encode())
    key.update(_cpu_signature().encode())
    return cache_dir() / f"kernels-{key.hexdigest()[:16]}.so"


def build(force: bool = False) -> Path:
    """Compile the op if this TensorFlow, CPU and source have no library yet.

    Args:
        force: rebuild even if the library exists.

    Returns:
        The library's path.

    Raises:
        NativeBuildError: no compiler, or the compiler failed (its last lines are in the
            message).
    """
    return _build(
        _library_path(), SOURCE, _command, "the fused WALS solver (once, about a minute)", force
    )


def build_kernels(force: bool = False) -> Path:
    """Compile the ranking kernels (`kernels.cc`, a few seconds) if they are not built yet.

    Raises:
        NativeBuildError: no compiler, or the compiler failed.
    """
    return _build(_kernels_path(), KERNELS_SOURCE, _kernels_command, "the ranking kernels", force)


def _build(path: Path, source: Path, command_for, what: str, force: bool) -> Path:
    if path.exists() and not force:
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise NativeBuildError(f"cannot create the build folder {path.parent}: {error}") from None
    with open(path.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same library
        if path.exists() and not force:
            return path
        with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
            partial = Path(scratch) / path.name
            command = command_for(partial)
            logger.info("Building %s: %s", what, path)
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                errors = [line for line in result.stderr.splitlines() if "error" in line]
                detail = "\n".join((errors or result.stderr.splitlines())[-5:])
                raise NativeBuildError(
                    f"compiling {source.name} failed ({' '.join(command[:1])} exit code "
                    f"{result.returncode}):\n{detail}"
                )
            os.replace(partial, path)  # atomic: readers never see a half-written library
    return path


@functools.cache
def load():
    """The loaded op module (its `wals_solve_rows` function), building it if needed.

    Raises:
        NativeBuildError: the library could not be built or loaded.
    """
    from walsrec.tensorflow_import import import_tensorflow

    tf = import_tensorflow()

    path = build()
    try:
        return tf.load_op_library(str(path))
    except (tf.errors.NotFoundError, OSError) as error:
        raise NativeBuildError(f"loading {path} failed: {error}") from None


_KERNELS_OFF = ("0", "false", "no", "off")


@functools.cache
def kernels() -> Any:
    """The ranking kernels as a ctypes library, or None (NumPy is used instead).

    None when `$WALSREC_NATIVE_KERNELS` is 0 / false / off, or when the library cannot be built
    or loaded: the reason is logged once as a warning.
    """
    if os.environ.get("WALSREC_NATIVE_KERNELS", "").strip().lower() in _KERNELS_OFF:
        return None
    try:
        library = ctypes.CDLL(str(build_kernels()))
    except (NativeBuildError, OSError) as error:
        logger.warning("ranking kernels unavailable, using NumPy (same results): %s", error)
        return None
    pointer, int64, int32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for name in ("walsrec_top_k_f32", "walsrec_top_k_f64"):
        function = getattr(library, name)
        function.restype = int64
        function.argtypes = [pointer, int64, int64, int64, pointer, pointer, pointer, pointer]
        function.argtypes += [pointer, int32]
    library.walsrec_top_n_csr.restype = int64
    library.walsrec_top_n_csr.argtypes = [pointer, pointer, int64, int64, pointer, int32]
    library.walsrec_ranked_top_k.restype = int64
    library.walsrec_ranked_top_k.argtypes = [pointer, pointer, int64, int64, int64, pointer]
    library.walsrec_ranked_top_k.argtypes += [pointer, pointer, pointer, pointer, int32]
    library.walsrec_rank_within_groups.restype = int64
    library.walsrec_rank_within_groups.argtypes = [pointer, pointer, int64, int64, pointer]
    library.walsrec_rank_within_groups.argtypes += [pointer, int32]
    for name in ("walsrec_observed_sums_f32", "walsrec_observed_sums_f64"):
        function = getattr(library, name)
        function.restype = int64
        function.argtypes = [pointer, pointer, int64, int64, pointer, pointer, pointer, pointer]
        function.argtypes += [ctypes.c_double, pointer, pointer, int32]
    return library


def usable_cores() -> int:
    """The cores this process may run on, capped by `$WALSREC_NATIVE_THREADS` (serving sets 1
    per worker)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cap = os.environ.get("WALSREC_NATIVE_THREADS", "").strip()
    if cap.isdigit() and int(cap) >= 1:
        cores = min(cores or 1, int(cap))
    return max(1, cores or 1)


def threads_for(work: int) -> int:
    """Threads for a kernel call over `work` elements: 1 below 2^20, else `usable_cores()`."""
    return 1 if work < 1 << 20 else usable_cores()
