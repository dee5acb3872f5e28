"""tools/check_readme_figures.py: every table with figures, in the README and on the documentation's pages
(``docs/**/*.md``), names the command that made them."""

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


def test_every_table_of_the_readme_and_the_docs_names_its_command_with_no_exceptions(capsys):
    # the README's measured tables moved to the documentation's pages: the check by default reads both
    checker = load_checker()
    assert checker.EXCEPTIONS == ()
    files = checker.default_files()
    assert files[0] == REPOSITORY / "README.md"
    assert {REPOSITORY / "docs" / page for page in ("training.md", "lab.md", "kernels.md")} <= set(files)
    assert checker.main([]) == 0, capsys.readouterr().err
    assert "figures: ok" in capsys.readouterr().out


def test_a_docs_page_is_held_to_the_same_rule_and_the_files_it_includes_are_checked(tmp_path, monkeypatch, capsys):
    (tmp_path / "README.md").write_text("# Tool\n\nThe figures are on the documentation's pages.\n")
    (tmp_path / "docs" / "api").mkdir(parents=True)
    (tmp_path / "docs" / "speed.md").write_text("""# Speed

Measured by `python bench/speed.py --quick` on 2 cores:

| shape | ms |
|---|---:|
| (32, 100) | 41.6 |
""")
    (tmp_path / "docs" / "api" / "memory.md").write_text("""# Memory

| shape | MB |
|---|---:|
| (32, 4000) | 989 |
""")
    (tmp_path / "docs" / "layout.md").write_text('--8<-- "LAYOUT.md"\n')
    (tmp_path / "LAYOUT.md").write_text("# Layout\n\n| stage | seconds |\n|---|---:|\n| train | 12 |\n")
    checker = load_checker()
    files = checker.default_files(tmp_path)
    assert [file.relative_to(tmp_path).as_posix() for file in files] == [
        "README.md",
        "docs/api/memory.md",
        "docs/layout.md",
        "LAYOUT.md",
        "docs/speed.md",
    ]
    speed, memory, layout = (checker.read_tables(file.read_text())[0] for file in (files[4], files[1], files[3]))
    assert (speed.heading, speed.numbers, speed.passes) == ("Speed", ["32", "100", "41.6"], True)
    assert speed.commands == ["python bench/speed.py --quick"]
    assert (memory.heading, memory.passes, layout.heading, layout.passes) == ("Memory", False, "Layout", False)

    monkeypatch.chdir(tmp_path)  # a page's includes are read from where mkdocs runs, the repository root
    assert checker.main(["README.md", "docs"]) == 1
    err = capsys.readouterr().err
    assert "2 of 3 tables" in err and "docs/api/memory.md line 3 [Memory]" in err and "LAYOUT.md line 3 [Layout]" in err
    (tmp_path / "LAYOUT.md").unlink()
    assert checker.main(["docs"]) == 1
    assert "no such file (named or included by a page): LAYOUT.md" in capsys.readouterr().err


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
