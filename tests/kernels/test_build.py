"""Building the kernels: a broken source fails loudly when they are required, falls back otherwise."""

from __future__ import annotations

import pytest

from rnnlab.kernels import build


@pytest.fixture
def broken_source(monkeypatch, tmp_path):
    source = tmp_path / "recurrent.cpp"
    source.write_text("this is not C++;\n")
    monkeypatch.setattr(build, "SOURCE", source)
    monkeypatch.setattr(build, "_module", None)
    monkeypatch.setattr(build, "_failure", None)
    monkeypatch.setenv("RNNLAB_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RNNLAB_KERNELS", raising=False)
    if build._compiler() is None:
        pytest.skip("no C++ compiler on this machine")
    return source


def test_a_broken_source_fails_the_run_when_kernels_are_required(broken_source, monkeypatch):
    monkeypatch.setenv("RNNLAB_REQUIRE_KERNELS", "1")
    with pytest.raises(RuntimeError, match=r"required \(RNNLAB_REQUIRE_KERNELS=1\).*compiler failed"):
        build.load()


def test_a_broken_source_falls_back_for_users_and_status_says_why(broken_source, monkeypatch):
    monkeypatch.setenv("RNNLAB_REQUIRE_KERNELS", "0")
    assert build.load() is None
    assert build.status().startswith("unavailable: RuntimeError: the compiler failed")


def test_an_unknown_isa_is_refused(monkeypatch):
    monkeypatch.setenv("RNNLAB_KERNEL_ISA", "avx9000")
    with pytest.raises(ValueError, match="RNNLAB_KERNEL_ISA must be one of native, baseline, got 'avx9000'"):
        build.isa()
