"""Compile the kernels once per machine, at first use, into a cache; load it from there after.

The sources: ``recurrent.cpp`` (the Python bindings and the streaming ``Stepper``) and a file per cell
family (``rnn.cpp``, ``lstm.cpp``, ``gru.cpp``, ``min_rnn.cpp``), sharing ``recurrent.h``. Each is
compiled on its own, as many at once as there are CPUs (``$MAX_JOBS``, as for torch's extensions,
sets fewer), and the objects linked into one shared object.

Why not at install: ``pip install -e .`` builds in an isolated environment, which would fetch a
(CUDA) torch of its own to compile against. Why not ``torch.utils.cpp_extension.load``: it needs
``ninja``. ``c++`` commands with torch's own include and library paths are all the extension
needs, and every machine rnnlab supports has gcc.

The cache (``$RNNLAB_KERNEL_CACHE``, default ``~/.cache/rnnlab/kernels``) holds one shared object
per (sources and headers, torch version, Python, compiler flags); a file lock lets concurrent processes (DDP
workers, the lab's executors) wait for a single build. Anything that goes wrong (no compiler, a
failed compile, ``RNNLAB_KERNELS=0``) leaves :func:`load` returning ``None`` and the layers on
their pure-PyTorch paths; :func:`status` says why. ``RNNLAB_REQUIRE_KERNELS=1`` (CI) turns a failed
build into an error instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.machinery
import importlib.util
import os
import platform
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from types import ModuleType

import torch

SOURCE = Path(__file__).with_name("recurrent.cpp")  # the module: bindings and Stepper
# The cell families' translation units, linked with SOURCE; the headers they share are the *.h beside them.
FAMILY_SOURCES = tuple(Path(__file__).with_name(name) for name in ("lstm.cpp", "min_rnn.cpp", "gru.cpp", "rnn.cpp"))
_lock = threading.Lock()
_module: ModuleType | None = None
_failure: str | None = None


def cache_dir() -> Path:
    return Path(os.environ.get("RNNLAB_KERNEL_CACHE") or Path.home() / ".cache" / "rnnlab" / "kernels")


def required() -> bool:
    """True when ``RNNLAB_REQUIRE_KERNELS=1``: a failed build raises instead of falling back (CI sets
    it, so a broken kernel source fails the run rather than turning the kernel tests into skips)."""
    return os.environ.get("RNNLAB_REQUIRE_KERNELS", "0").strip().lower() in ("1", "true", "yes", "on")


def enabled() -> bool:
    """False when ``RNNLAB_KERNELS=0`` switches the compiled kernels off."""
    return os.environ.get("RNNLAB_KERNELS", "1").strip().lower() not in ("0", "false", "no", "off")


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


ISAS = ("native", "baseline")


def isa() -> str:
    """The instruction set the kernels are built for: ``RNNLAB_KERNEL_ISA=native`` (the default: AVX2 +
    FMA where the CPU has them) or ``baseline`` (the architecture's base ISA, x86-64's SSE2: what any
    CPU of the architecture runs; the tests run both, since rounding differs between them)."""
    value = os.environ.get("RNNLAB_KERNEL_ISA", "native").strip().lower() or "native"
    if value not in ISAS:
        raise ValueError(f"RNNLAB_KERNEL_ISA must be one of {', '.join(ISAS)}, got {value!r}")
    return value


def _architecture_flags() -> list[str]:
    # The gate loops are written for the compiler to vectorise; AVX2 + FMA is what torch's own CPU
    # kernels use on such a machine. The flags enter the cache key, so a cache shared by machines
    # of different CPUs never hands one the other's instructions.
    if isa() == "baseline":
        return []
    capability = torch.backends.cpu.get_cpu_capability()
    return ["-mavx2", "-mfma"] if capability in ("AVX2", "AVX512") and platform.machine() == "x86_64" else []


def _compile_flags(module_name: str) -> list[str]:
    from torch.utils import cpp_extension

    includes = [*cpp_extension.include_paths(), sysconfig.get_paths()["include"]]
    return [
        "-O3",
        "-std=c++20",
        "-fPIC",
        "-fopenmp",
        "-fno-math-errno",
        "-fno-trapping-math",
        "-w",
        *_architecture_flags(),
        f"-DTORCH_EXTENSION_NAME={module_name}",
        "-DTORCH_API_INCLUDE_EXTENSION_H",
        f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
        *(f"-I{path}" for path in includes),
    ]


def _link_flags() -> list[str]:
    from torch.utils import cpp_extension

    library_dirs = cpp_extension.library_paths()
    return [
        "-shared",
        "-fopenmp",
        *(f"-L{path}" for path in library_dirs),
        *(f"-Wl,-rpath,{path}" for path in library_dirs),
        "-lc10",
        "-ltorch",
        "-ltorch_cpu",
        "-ltorch_python",
    ]


def _sources() -> list[Path]:
    """The translation units, the slowest to compile first (SOURCE: torch's Python headers)."""
    return [SOURCE, *FAMILY_SOURCES]


def _headers() -> list[Path]:
    return sorted(Path(__file__).parent.glob("*.h"))


def _jobs() -> int:
    """How many compilers run at once: one per CPU this process may use, or ``$MAX_JOBS``."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    limit = os.environ.get("MAX_JOBS", "").strip()
    return max(1, min(cpus, int(limit))) if limit.isdigit() else max(1, cpus)


def _module_name() -> str:
    key = hashlib.sha256()
    for path in [*_sources(), *_headers()]:
        key.update(f"{path.name}\0".encode())
        key.update(path.read_bytes())
    key.update(f"{torch.__version__}|{sys.version}|{platform.machine()}|{_architecture_flags()}".encode())
    return f"rnnlab_recurrent_{key.hexdigest()[:16]}"


def _import(path: Path, module_name: str) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader(module_name, str(path))
    spec = importlib.util.spec_from_file_location(module_name, path, loader=loader)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]  # a loader is given: never None
    loader.exec_module(module)
    return module


def _build(target: Path, module_name: str) -> None:
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C++ compiler found (tried $CXX, c++, g++)")
    print(
        f"rnnlab: compiling the CPU recurrent kernels for this machine, once (about a minute); cached in "
        f"{target.parent}",
        file=sys.stderr,
        flush=True,
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        objects = _compile(compiler, _sources(), Path(scratch), _compile_flags(module_name))
        built = Path(scratch) / target.name
        completed = subprocess.run(
            [compiler, *map(str, objects), "-o", str(built), *_link_flags()], capture_output=True, text=True
        )
        if completed.returncode != 0:
            raise RuntimeError(f"the linker failed (exit {completed.returncode}):\n{_tail(completed.stderr)}")
        os.replace(built, target)  # atomic: another process never sees half a file
    print(f"rnnlab: kernels compiled in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)


def _tail(output: str) -> str:
    return "\n".join(output.strip().splitlines()[-15:])


def _compile(compiler: str, sources: list[Path], scratch: Path, flags: list[str]) -> list[Path]:
    """Each source into an object in ``scratch``, :func:`_jobs` at a time; the first failure stops the others."""
    objects = [scratch / f"{source.stem}.o" for source in sources]
    pending = list(zip(sources, objects))
    running: list[tuple[Path, subprocess.Popen]] = []
    try:
        while pending or running:
            while pending and len(running) < _jobs():
                source, target = pending.pop(0)
                # the output into a file, not a pipe: a compiler never blocks on a full pipe nobody reads
                with open(scratch / f"{source.stem}.log", "w") as log:
                    command = [compiler, "-c", str(source), "-o", str(target), *flags]
                    # a session of its own: stopping the driver (c++) must stop the compiler it runs (cc1plus)
                    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                    running.append((source, process))
            for source, process in list(running):
                if process.poll() is None:
                    continue
                running.remove((source, process))
                if process.returncode != 0:
                    output = (scratch / f"{source.stem}.log").read_text(errors="replace")
                    raise RuntimeError(
                        f"the compiler failed on {source.name} (exit {process.returncode}):\n{_tail(output)}"
                    )
            time.sleep(0.05)
    finally:
        for _, process in running:  # after a failure: the compilers still running, ours
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return objects


def load(*, build: bool = True) -> ModuleType | None:
    """The compiled kernel module, building it first if needed (``build=False``: only if cached).

    Returns ``None`` when the kernels are switched off or cannot be built (see :func:`status`).
    """
    global _module, _failure
    if _module is not None or not enabled():
        return _module
    if _failure is not None:
        return None
    with _lock:
        if _module is not None:
            return _module
        module_name = _module_name()
        directory = cache_dir()
        target = directory / f"{module_name}{sysconfig.get_config_var('EXT_SUFFIX') or '.so'}"
        try:
            if not target.exists():
                if not build:
                    return None
                directory.mkdir(parents=True, exist_ok=True)
                with _file_lock(directory / f"{module_name}.lock"):
                    if not target.exists():  # another process may have built it while we waited
                        _build(target, module_name)
            _module = _import(target, module_name)
        except Exception as error:  # any failure means: run the pure-PyTorch path, and say why
            if required():
                raise RuntimeError(
                    f"the compiled CPU kernels are required (RNNLAB_REQUIRE_KERNELS=1) and "
                    f"failed to build or load: {error}"
                ) from error
            _failure = f"{type(error).__name__}: {error}"
            print(
                f"rnnlab: the compiled CPU kernels are unavailable, running the pure-PyTorch paths "
                f"({_failure.splitlines()[0]})",
                file=sys.stderr,
                flush=True,
            )
            return None
    return _module


@contextlib.contextmanager
def _file_lock(path: Path):
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def status() -> str:
    """One line on the compiled kernels' state, without building them."""
    if not enabled():
        return "switched off (RNNLAB_KERNELS=0)"
    if _module is not None:
        return f"compiled for the {isa()} ISA ({' '.join(_architecture_flags()) or 'no -m flags'}), loaded"
    if _failure is not None:
        return f"unavailable: {_failure.splitlines()[0]}"
    if _compiler() is None:
        return "unavailable: no C++ compiler"
    target = cache_dir() / f"{_module_name()}{sysconfig.get_config_var('EXT_SUFFIX') or '.so'}"
    return "compiled (cached)" if target.exists() else "compiled at first use (about a minute, once)"
