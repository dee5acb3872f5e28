"""tools/check_readme_figures.py: every README table with figures names the command that made them."""

import importlib.util
import sys

from shared_files import REPOSITORY


def load_checker():
    spec = importlib.util.spec_from_file_location(
        "check_readme_figures", REPOSITORY / "tools" / "check_readme_figures.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_table_of_the_readme_names_its_command_with_no_exceptions(capsys):
    checker = load_checker()
    assert checker.EXCEPTIONS == ()
    assert checker.main([str(REPOSITORY / "README.md")]) == 0, capsys.readouterr().err
    assert "figures: ok" in capsys.readouterr().out


def test_a_table_without_a_command_before_it_fails_and_one_after_it_does_not_count(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("""# Tool

## Speed

```bash
# a comment, not a heading
python bench/speed.py --quick
```

| shape | ms |
|---|---:|
| (32, 100) | 41.6 |

## Memory

| shape | MB |
|---|---:|
| (32, 4000) | 989 |

Measured by `python bench/memory.py`.

## Layout

| folder | what |
|---|---|
| cells | one file per cell |
""")
    tables = load_checker().read_tables(readme.read_text())
    assert [(table.heading, table.numbers, table.passes) for table in tables] == [
        ("Speed", ["32", "100", "41.6"], True),
        ("Memory", ["32", "4000", "989"], False),
        ("Layout", [], True),
    ]
    assert tables[0].commands == ["python bench/speed.py --quick"]
    assert load_checker().main([str(readme)]) == 1
    assert "line 16 [Memory]" in capsys.readouterr().err


def test_inline_commands_count_across_a_line_break_and_in_the_tables_cells(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("""## Runs

Figures of `OMP_NUM_THREADS=1 python bench/reference.py --epochs 18
--threads 1`:

| steps | bpc |
|---:|---:|
| 130 | 2.412 |

| command | accuracy |
|---|---|
| `rnnlab train --task recall` | 1.000 |
""")
    first, second = load_checker().read_tables(readme.read_text())
    assert first.commands == ["OMP_NUM_THREADS=1 python bench/reference.py --epochs 18 --threads 1"]
    assert second.commands == ["rnnlab train --task recall"] and second.numbers == ["1.000"]
