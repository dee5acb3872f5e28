"""The import check (rnnlab/tools/deps.py): rnnlab passes it, and it fails on a cycle and on a back-edge."""

import textwrap

from rnnlab.tools import deps


def test_rnnlab_has_no_import_cycle_and_no_import_from_a_later_stage():
    assert deps.problems() == []


def write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_a_cycle_a_back_edge_and_a_cycle_between_parts_are_found(tmp_path):
    package = tmp_path / "rnnlab"
    write(
        package,
        {
            "__init__.py": "",
            "cells/__init__.py": "",
            "cells/base.py": "def f():\n    from rnnlab.kernels import run\n",  # deferred: still counts
            "kernels/__init__.py": "from rnnlab.cells.lstm import step\n",
            "cells/lstm.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rnnlab.lab import x\n",
            "layers.py": "from rnnlab.train import run\n",  # a later stage
            "train/__init__.py": "from . import run\n",
            "train/run.py": "from rnnlab.train import other\n",
            "train/other.py": "from rnnlab.train.run import go\n",
            "lab/__init__.py": "",
        },
    )
    found = deps.problems(package)
    assert "rnnlab.layers (line 1) imports rnnlab.train.run, a later stage" in found
    assert "rnnlab.cells.base (line 2) imports rnnlab.kernels, a later stage" in found
    assert "import cycle: rnnlab.train.other → rnnlab.train.run → rnnlab.train.other" in found
    assert "import cycle between parts: rnnlab.cells → rnnlab.kernels → rnnlab.cells" in found
    assert not any("rnnlab.lab" in line for line in found)  # a TYPE_CHECKING import is no dependency
    assert len(found) == 4, found
