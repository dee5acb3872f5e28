"""``rnnlab compare`` end to end: a real tiny grid, its results file, resumption, refusals, Ctrl-C, Ray."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import TINY, TINY_PROBE
from rnnlab.cli import app
from rnnlab.errors import ConfigError
from rnnlab.lab import CompareConfig, compare, resolve
from rnnlab.lab.folder import prepare_out
from rnnlab.lab.results import load, strip_machine_dependent, validate


def test_results_file_is_complete_and_valid(tiny_comparison):
    results = load(tiny_comparison.out / "results.json")  # validates against the schema
    assert results["status"] == "complete" and results["cells_done"] == 4 == results["cells_expected"]
    assert {(c["model"], c["length"]) for c in results["cells"]} == {("rnn", 6), ("rnn", 12), ("lstm", 6), ("lstm", 12)}
    for cell in results["cells"]:
        assert cell["status"] == "done" and cell["epochs"] == 3
        assert 0 <= cell["metric"]["value"] <= 1 and cell["metric"]["name"] == "accuracy"
        # every model sized to the same budget (within the 10% the sizing promises)
        assert abs(cell["num_parameters"] - 1500) <= 150
        cost = cell["cost"]
        assert cost["train_ms_per_step"] > 0 and cost["latency_ms_sequence"] > 0 and cost["latency_ms_step"] > 0
        assert cost["train_memory_mb"] > 0 and cost["peak_rss_mb"] > 50 and cost["threads"] == 1
        flow = cell["gradient_flow"]
        assert flow["steps"][0] == 1 and flow["steps"][-1] == cell["length"]
        assert len(flow["init"]["h"]) == len(flow["trained"]["h"]) == len(flow["steps"])
        assert ("c" in flow["init"]) == (cell["model"] == "lstm")
        assert (cell["gates"] is None) == (cell["model"] == "rnn")
        assert [row["epoch"] for row in cell["history"]] == [1, 2, 3]
        run = Path(cell["run_dir"])
        assert (run / "model.safetensors").is_file() and (run / "summary.json").is_file()
        summary = json.loads((run / "summary.json").read_text())
        assert summary["test_metrics"]["accuracy"] == cell["metric"]["value"]
    assert results["probe"]["hidden_size"] == TINY_PROBE["hidden_size"]
    assert {claim["id"] for claim in results["claims"]} >= {"vanishing-gradient", "long-sequence-1000"}
    assert results["advice"]["pick"] in ("rnn", "lstm")


def test_every_cell_is_stored_on_its_own(tiny_comparison):
    stored = sorted(path.name for path in (tiny_comparison.out / "cells").glob("*.json"))
    assert stored == ["lstm__T12__s0.json", "lstm__T6__s0.json", "rnn__T12__s0.json", "rnn__T6__s0.json"]
    for name in ("report.html", "results.json", "experiment.json", "probe.json", "figures/accuracy_vs_length.png"):
        assert (tiny_comparison.out / name).is_file()


def test_rerun_skips_the_cells_already_done(tiny_comparison):
    cells = sorted((tiny_comparison.out / "cells").glob("*.json"))
    before = {path.name: path.stat().st_mtime_ns for path in cells}
    again = compare(CompareConfig(out=str(tiny_comparison.out), **TINY), progress=False)
    assert (again.ran, again.skipped) == (0, 4) and not again.interrupted
    assert {path.name: path.stat().st_mtime_ns for path in cells} == before
    assert strip_machine_dependent(again.results) == strip_machine_dependent(tiny_comparison.results)


def test_a_folder_holding_another_experiment_is_refused(tiny_comparison):
    with pytest.raises(ConfigError, match=r"holds a different experiment \(params: 1500 there, 2000 now\)"):
        compare(CompareConfig(out=str(tiny_comparison.out), **{**TINY, "params": 2000}), progress=False)
    result = CliRunner().invoke(
        app,
        [
            "compare",
            "--out",
            str(tiny_comparison.out),
            "--models",
            "rnn,lstm",
            "--lengths",
            "6,12",
            "--budget",
            "quick",
            "--epochs",
            "4",
            "-q",
        ],
    )
    assert result.exit_code == 2 and "--force" in " ".join(result.output.split())


def test_force_replaces_only_what_a_comparison_wrote(tiny_comparison, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(tiny_comparison.out, out)
    (out / "notes.txt").write_text("mine")
    prepare_out(resolve(CompareConfig(out=str(out), **{**TINY, "params": 2000, "force": True})))
    assert sorted(path.name for path in out.iterdir()) == ["experiment.json", "notes.txt"]
    assert json.loads((out / "experiment.json").read_text())["recipe"]["params"] == 2000


def test_a_folder_that_is_not_a_comparison_is_refused(tmp_path):
    (tmp_path / "thesis.tex").write_text("...")
    with pytest.raises(ConfigError, match="is not an rnnlab comparison"):
        prepare_out(resolve(CompareConfig(out=str(tmp_path), **TINY)))


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--models", "rnn,lstn"], "unknown model 'lstn'; did you mean 'lstm'"),
        (["--task", "recal"], "unknown task 'recal'; did you mean 'recall'"),
        (["--lengths", "10,-5"], "item 2 is '-5'"),
        (["--lengths", "ten"], "item 1 is 'ten'"),
        (["--seeds", "1,x"], "item 2 is 'x'"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(tmp_path, arguments, message):
    result = CliRunner().invoke(app, ["compare", "--out", str(tmp_path / "out"), "-q", *arguments])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_ray_address_that_does_not_answer_fails_within_seconds(tmp_path):
    pytest.importorskip("ray")
    started = time.monotonic()
    result = CliRunner().invoke(
        app,
        [
            "compare",
            "--executor",
            "ray",
            "--address",
            f"127.0.0.1:{_closed_port()}",
            "--out",
            str(tmp_path / "out"),
            "-q",
        ],
    )
    elapsed = time.monotonic() - started
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "no Ray cluster answers at 127.0.0.1" in text and "ray start --head" in text
    assert elapsed < 15
    assert not (tmp_path / "out").exists()


def test_ray_gives_the_same_results_as_local_processes(tiny_comparison, tmp_path):
    ray = pytest.importorskip("ray")
    # the module, not the function `rnnlab.lab.compare` that shadows it as an attribute; and not
    # through `conftest`, a name another test folder's conftest may hold
    import importlib

    compare_module = importlib.import_module("rnnlab.lab.compare")

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(compare_module, "PROBE_OPTIONS", TINY_PROBE)
            on_ray = compare(CompareConfig(out=str(tmp_path / "ray"), executor="ray", **TINY), progress=False)
    finally:
        ray.shutdown()
    validate(on_ray.results)
    assert on_ray.results["machine"]["executor"] == "ray"
    local, remote = (strip_machine_dependent(r) for r in (tiny_comparison.results, on_ray.results))
    assert remote == local  # identical but for timings, memory of the process and paths


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            if f"\nPPid:\t{pid}\n" in status:
                children.append(int(entry.name))
    return children


# Loaded by every process of the comparison under test (the CLI and its spawned workers) through
# PYTHONPATH: the first grid cell runs, every later one waits for a file that the test never
# writes, so the interrupt lands while cells are still pending however fast the machine is.
HOLD_LATER_CELLS = """
import os, time
import rnnlab.lab.cell as cell

run_cell = cell.run_cell

def held(*args, **kwargs):
    gate = os.environ["RNNLAB_TEST_GATE"]
    try:
        os.close(os.open(os.path.join(gate, "first"), os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        while not os.path.exists(os.path.join(gate, "release")):
            time.sleep(0.05)
    return run_cell(*args, **kwargs)

cell.run_cell = held
"""


def held_comparison(tmp_path, out, lengths="6,8,10,12,14,16", gate=True):
    """The command of a small comparison and its environment; with ``gate``, every cell after the
    first waits (``HOLD_LATER_CELLS``) until ``tmp_path / "hook" / "release"`` exists."""
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(HOLD_LATER_CELLS)
    command = [sys.executable, "-m", "rnnlab.cli", "compare", "--out", str(out), "--models", "rnn,lstm"]
    command += ["--lengths", lengths, "--seeds", "1", "--budget", "quick", "--params", "1500", "--epochs", "3"]
    command += ["--train-samples", "256", "--workers", "2", "-q"]
    environment = {**os.environ, "COLUMNS": "200"}
    if gate:
        environment["RNNLAB_TEST_GATE"] = str(hook)
        environment["PYTHONPATH"] = os.pathsep.join([str(hook), *filter(None, [os.environ.get("PYTHONPATH")])])
    return command, environment


def wait_for_first_cell(process, out):
    deadline = time.monotonic() + 240
    while not list((out / "cells").glob("*__s0.json")) if (out / "cells").is_dir() else True:
        assert process.poll() is None, process.stdout.read().decode()
        assert time.monotonic() < deadline, "no cell finished in time"
        time.sleep(0.2)


def alive(pids):
    return [
        pid
        for pid in pids
        if Path(f"/proc/{pid}").exists() and "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    ]


def test_ctrl_c_leaves_a_valid_partial_report(tmp_path):
    out = tmp_path / "interrupted"
    command, environment = held_comparison(tmp_path, out)
    process = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environment
    )
    try:
        wait_for_first_cell(process, out)
        workers = [pid for child in _children(process.pid) for pid in [child, *_children(child)]]
        os.killpg(process.pid, signal.SIGINT)  # what the terminal does on Ctrl-C: the whole group
        output = process.communicate(timeout=120)[0].decode()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, output
    assert "interrupted" in output and "Re-run the same command" in " ".join(output.split())
    results = load(out / "results.json")
    assert results["status"] == "partial" and results["cells_done"] == 1 and results["cells_expected"] == 12
    assert (out / "report.html").is_file()
    time.sleep(1)
    assert not alive(workers), f"worker processes left running: {alive(workers)}"


def test_sigkill_of_a_comparison_leaves_no_worker_and_a_rerun_completes(tmp_path):
    out = tmp_path / "killed"
    command, environment = held_comparison(tmp_path, out, lengths="6,8")
    process = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environment
    )
    try:
        wait_for_first_cell(process, out)
        workers = [pid for child in _children(process.pid) for pid in [child, *_children(child)]]
        assert workers
        process.kill()  # SIGKILL of the comparison alone: it can stop nothing, its workers must see it
        process.wait()
        deadline = time.monotonic() + 5
        while alive(workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(workers), f"worker processes left running 5 s after the kill: {alive(workers)}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    command, environment = held_comparison(tmp_path, out, lengths="6,8", gate=False)
    rerun = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    results = load(out / "results.json")
    assert results["status"] == "complete" and results["cells_done"] == results["cells_expected"] == 4


def test_sigterm_interrupts_a_comparison_like_ctrl_c():
    from rnnlab.lab.folder import _sigterm_interrupts

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), _sigterm_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises at once; this is never reached
    assert signal.getsignal(signal.SIGTERM) is before
