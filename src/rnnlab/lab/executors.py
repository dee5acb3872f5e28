"""Where the cells run: local worker processes (the default, no server) or a Ray cluster.

Both executors take a list of tasks (plain dicts), run ``run_task`` on each somewhere, and yield
``(task, outcome)`` pairs in the order they finish, where ``outcome`` is the returned dict or the
exception that escaped. The caller stores each result as it arrives, so stopping at any moment
loses at most the cells still running.

Local: a ``ProcessPoolExecutor`` with the ``spawn`` start method (a fresh interpreter: no forked
copy of the caller's threads or torch state). Workers are reused from cell to cell: starting one
imports torch and Lightning, seconds that a grid of small cells would pay again and again (each
cell resets the process's peak-memory mark, see ``measures.reset_peak_rss``). Each worker runs
``cpu_count // workers`` torch threads, set
through ``OMP_NUM_THREADS`` in the environment the workers start with: two workers on two cores
would otherwise run four OpenMP threads that spin against each other. Workers ignore SIGINT — a
Ctrl-C goes to the whole process group, and a cell interrupted half-way must not report a
half-trained model as done; the parent stops them instead (``abort``). A worker whose parent is
gone (the comparison killed with SIGKILL, which it cannot pass on) ends itself within
``PARENT_CHECK_SECONDS``: no orphan goes on training into the folder.

Ray: ``ray.init(address)`` joins a running cluster (``--address host:port``, ``ray://host:port``
or ``auto``) or, without an address, starts a local instance with ``workers`` CPUs. Each cell is a
task with ``num_cpus=1`` (Ray then sets ``OMP_NUM_THREADS=1`` in its worker). Every node must have rnnlab
installed; a cell's run directory is written
on the node that ran it (the results come back to the caller).
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from rnnlab.errors import ConfigError

#: How long a Ray address may take to answer before we give up, seconds.
RAY_CONNECT_TIMEOUT = 5.0
RAY_DEFAULT_PORT = 6379
RAY_CLIENT_DEFAULT_PORT = 10001


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """What every worker runs: a grid cell (``kind="cell"``) or the layer cost probe (``kind="probe"``)."""
    if task["kind"] == "cell":
        from rnnlab.lab.cell import run_cell

        return run_cell(task["cell"], task["recipe"], task["run_dir"])
    if task["kind"] == "probe":
        from rnnlab.lab.measures import probe_layer_costs

        return probe_layer_costs(**task.get("options", {}))
    raise ValueError(f"unknown task kind {task['kind']!r}")


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def check_executor(kind: str, address: str | None = None) -> None:
    """Refuse, quickly, an executor that cannot run: Ray not installed, or a Ray address where nothing answers."""
    if kind != "ray":
        return
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConfigError(
            '--executor ray needs Ray: pip install -c constraints.txt "rnnlab[ray]" (or "ray>=2.9")'
        ) from None
    if address is not None:
        check_ray_address(address)


def make_executor(
    kind: str,
    *,
    workers: int,
    address: str | None = None,
    function: Callable[[dict[str, Any]], dict[str, Any]] = run_task,
):
    """The executor ``kind`` (``"local"`` or ``"ray"``); Ray is checked and connected here, so a bad
    address fails before any work starts."""
    if kind == "local":
        return LocalExecutor(workers, function=function)
    if kind == "ray":
        return RayExecutor(workers, address=address, function=function)
    from rnnlab.errors import unknown_name

    raise unknown_name("executor", kind, ("local", "ray"))


# --------------------------------------------------------------------------- local
#: How often a worker checks that the comparison that started it is still alive, seconds.
PARENT_CHECK_SECONDS = 0.5


def _start_worker(parent: int) -> None:
    """A local worker's start: ignore SIGINT (the parent stops the workers), and end when the
    parent ``parent`` is gone — killed with SIGKILL it can end nothing, and an orphan would go on
    training and writing into the comparison folder. The worker then sees another parent PID."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)  # no clean-up: what the cell was writing is the parent's to refuse or redo

    threading.Thread(target=watch, name="rnnlab-parent-watch", daemon=True).start()


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables for the processes started inside the block; restore them after."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class LocalExecutor:
    """Cells in ``workers`` local processes, one fresh process per cell."""

    name = "local"

    def __init__(self, workers: int, *, function: Callable[[dict[str, Any]], dict[str, Any]] = run_task) -> None:
        self.workers = workers
        self.threads = threads_per_worker(workers)
        self.function = function
        self._pool: futures.ProcessPoolExecutor | None = None
        self._environment: contextlib.ExitStack | None = None

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "workers": self.workers, "threads_per_worker": self.threads}

    def run(self, tasks: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], Any]]:
        if not tasks:
            return
        # The pool starts its workers while it runs (on submit): keep the thread settings in the
        # environment for as long as the pool lives.
        self._environment = contextlib.ExitStack()
        self._environment.enter_context(
            _environment(OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads))
        )
        self._pool = futures.ProcessPoolExecutor(
            max_workers=min(self.workers, len(tasks)),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(os.getpid(),),
        )
        try:
            pending = {self._pool.submit(self.function, task): task for task in tasks}
            for future in futures.as_completed(pending):
                task = pending.pop(future)
                try:
                    yield task, future.result()
                except futures.process.BrokenProcessPool as error:
                    yield task, RuntimeError(f"the worker process died ({error}); out of memory?")
                except Exception as error:
                    yield task, error
        except BaseException:  # Ctrl-C (or the caller stopped): do not wait for the running cells
            self.abort()
            raise
        finally:
            self.close()

    def abort(self) -> None:
        """Stop at once: cancel what has not started, end the running workers."""
        if self._pool is not None:
            # The pool keeps its worker processes in a private map; there is no public way to end
            # running calls (shutdown only cancels queued ones). SIGKILL, not SIGTERM: Lightning
            # turns SIGTERM into "finish the epoch gracefully", and a worker holds nothing to save
            # (the parent writes every result).
            for process in list(getattr(self._pool, "_processes", {}).values()):
                with contextlib.suppress(Exception):
                    process.kill()
        self.close(cancel=True)

    def close(self, cancel: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=not cancel, cancel_futures=True)
            self._pool = None
        if self._environment is not None:
            self._environment.close()
            self._environment = None


# --------------------------------------------------------------------------- ray
def check_ray_address(address: str, timeout: float = RAY_CONNECT_TIMEOUT) -> None:
    """Refuse, within ``timeout`` seconds, an address where nothing answers (``auto`` is left to Ray)."""
    if address == "auto":
        return
    target = address.removeprefix("ray://")
    default_port = RAY_CLIENT_DEFAULT_PORT if address.startswith("ray://") else RAY_DEFAULT_PORT
    host, _, port_text = target.rpartition(":") if ":" in target else (target, "", str(default_port))
    host = host.strip("[]") or "127.0.0.1"
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"--address: expected host:port, ray://host:port or auto; got {address!r}")
    started = time.monotonic()
    try:
        with socket.create_connection((host, int(port_text)), timeout=timeout):
            pass
    except OSError as error:
        waited = time.monotonic() - started
        raise ConfigError(
            f"--address {address!r}: no Ray cluster answers at {host}:{port_text} ({error.strerror or error} "
            f"after {waited:.1f} s). Start one with `ray start --head`, check the address, or leave out "
            "--address to start a local Ray instance"
        ) from None


class RayExecutor:
    """Cells as Ray tasks on a cluster (``address``) or on a local instance of ``workers`` CPUs."""

    name = "ray"

    def __init__(
        self,
        workers: int,
        *,
        address: str | None = None,
        function: Callable[[dict[str, Any]], dict[str, Any]] = run_task,
    ) -> None:
        check_executor("ray", address)
        import ray

        self.ray = ray
        self.workers = workers
        self.address = address
        self.function = function
        self._pending: dict[Any, dict[str, Any]] = {}
        self._started_here = not ray.is_initialized()
        if self._started_here:
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if address is None:
                ray.init(num_cpus=workers, **options)
            else:
                try:
                    ray.init(address=address, **options)
                except ConnectionError as error:
                    raise ConfigError(f"--address {address!r}: could not join the Ray cluster: {error}") from None

    def describe(self) -> dict[str, Any]:
        resources = self.ray.cluster_resources()
        return {
            "executor": self.name,
            "workers": int(resources.get("CPU", self.workers)),
            "threads_per_worker": 1,
            "address": self.address,
        }

    def run(self, tasks: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], Any]]:
        remote = self.ray.remote(num_cpus=1)(self.function)
        self._pending = {remote.remote(task): task for task in tasks}
        try:
            while self._pending:
                done, _ = self.ray.wait(list(self._pending), num_returns=1)
                for reference in done:
                    task = self._pending.pop(reference)
                    try:
                        yield task, self.ray.get(reference)
                    except self.ray.exceptions.RayTaskError as error:
                        yield task, error.as_instanceof_cause() if hasattr(error, "as_instanceof_cause") else error
                    except Exception as error:
                        yield task, error
        except BaseException:
            self.abort()
            raise
        finally:
            self.close()

    def abort(self) -> None:
        for reference in list(self._pending):
            with contextlib.suppress(Exception):
                self.ray.cancel(reference, force=True)
        self._pending = {}
        self.close()

    def close(self) -> None:
        if self._started_here and self.ray.is_initialized():
            self.ray.shutdown()
