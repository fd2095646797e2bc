"""The fused WALS row solver: one TensorFlow custom op (`wals_ops.cc`), built on first use.

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

from walsrec.errors import WalsrecError

__all__ = ["NativeBuildError", "build", "cache_dir", "load"]

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("wals_ops.cc")
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


def _command(output: Path) -> list[str]:
    import tensorflow as tf

    flags = list(_OPTIMIZATION_FLAGS)
    if platform.machine() not in ("x86_64", "AMD64"):
        flags = [flag for flag in flags if flag not in _X86_ONLY_FLAGS]
    return [
        _compiler(),
        "-shared",
        "-fPIC",
        *flags,
        str(SOURCE),
        "-o",
        str(output),
        *tf.sysconfig.get_compile_flags(),
        *tf.sysconfig.get_link_flags(),
    ]


def _library_path() -> Path:
    import tensorflow as tf

    key = hashlib.sha256()
    key.update(SOURCE.read_bytes())
    key.update(tf.__version__.encode())
    key.update(" ".join(_OPTIMIZATION_FLAGS).encode())
    key.update(_cpu_signature().encode())
    key.update(sys.version.encode())
    return cache_dir() / f"wals_ops-{key.hexdigest()[:16]}.so"


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
    path = _library_path()
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
            command = _command(partial)
            logger.info("Building the fused WALS solver (once, about a minute): %s", path)
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                errors = [line for line in result.stderr.splitlines() if "error" in line]
                detail = "\n".join((errors or result.stderr.splitlines())[-5:])
                raise NativeBuildError(
                    f"compiling {SOURCE.name} failed ({' '.join(command[:1])} exit code "
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
    import tensorflow as tf

    path = build()
    try:
        return tf.load_op_library(str(path))
    except (tf.errors.NotFoundError, OSError) as error:
        raise NativeBuildError(f"loading {path} failed: {error}") from None
