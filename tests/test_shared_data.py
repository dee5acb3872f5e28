"""The one helper every test uses to read ../shared: found beside the repository, skipped when absent,
a failure under CI=true."""

import pytest

from shared_files import REPOSITORY, SHARED, shared_data


def test_the_shared_folder_is_resolved_beside_the_repository_root():
    assert (REPOSITORY / "tests" / "conftest.py").is_file()
    assert REPOSITORY.parent / "shared" == SHARED


def test_a_missing_file_skips_with_the_reason(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"data/no_such_file.mat is not in"):
        shared_data("data/no_such_file.mat")


def test_a_missing_file_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true requires it"):
        shared_data("data/no_such_file.mat")
