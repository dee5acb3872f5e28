"""Sequence-to-sequence data: parallel text files and the generated dates (rnnlab/data/seq2seq.py)."""

import datetime as dt

import pytest
import torch

from rnnlab.data import collate, load_task, predict_inputs
from rnnlab.data.seq2seq import (
    BOS_INDEX,
    DAY_COUNT,
    EOS_INDEX,
    FIRST_DAY,
    FORM_COUNT,
    PAD_INDEX,
    UNK_INDEX,
    date_forms,
    decode_chars,
    generate_dates,
    ordinal,
    year_words,
)
from rnnlab.errors import ConfigError, DataError

PAIRS = "".join(
    f"{a}\t{b}\n"
    for a, b in [
        ("one", "1"),
        ("two", "2"),
        ("three", "3"),
        ("four", "4"),
        ("five", "5"),
        ("six", "6"),
        ("seven", "7"),
        ("eight", "8"),
        ("nine", "9"),
        ("ten", "10"),
        ("eleven", "11"),
        ("twelve", "12"),
    ]
)


def write(tmp_path, text, name="pairs.tsv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_file_gives_character_vocabularies_with_specials_and_eos_terminated_targets(tmp_path):
    task = load_task("seq2seq", write(tmp_path, PAIRS), val_fraction=0.2, test_fraction=0.2)
    meta, spec = task.meta, task.spec
    assert meta["source_vocab"][:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert (PAD_INDEX, UNK_INDEX, BOS_INDEX, EOS_INDEX) == (0, 1, 2, 3)
    assert spec.head == "seq2seq" and spec.vocab_size == len(meta["source_vocab"])
    assert spec.num_classes == len(meta["target_vocab"])
    # every training sample decodes back to a line of the file: x is the source, y the target then <eos>
    lines = {tuple(line.split("\t")) for line in PAIRS.splitlines()}
    for x, y in task.train:
        source = "".join(meta["source_vocab"][i] for i in x.tolist())
        assert int(y[-1]) == EOS_INDEX
        assert (source, decode_chars(meta["target_vocab"], y)) in lines
    assert len(lines) == len(task.train) + len(task.val) + len(task.test)
    assert sum(meta["sizes"].values()) == 12


def test_collate_pads_sources_with_pad_and_targets_with_minus_100(tmp_path):
    task = load_task("seq2seq", write(tmp_path, PAIRS), val_fraction=0.2, test_fraction=0.2)
    batch = collate([task.train[i] for i in range(len(task.train))])
    for row, (x, y) in enumerate(task.train[i] for i in range(len(task.train))):
        assert batch.lengths[row] == len(x)
        assert (batch.x[row, len(x) :] == PAD_INDEX).all() and (batch.y[row, len(y) :] == -100).all()


def test_characters_unseen_in_training_become_unk(tmp_path):
    train = write(tmp_path, PAIRS, "train.tsv")
    test = write(tmp_path, "zzz\tq\n", "test.tsv")
    task = load_task("seq2seq", train, test, val_fraction=0.2)
    x, y = task.test[0]
    assert x.tolist() == [UNK_INDEX] * 3 and y.tolist() == [UNK_INDEX, EOS_INDEX]
    assert task.meta["unseen_target_characters"]["test"] == 1


def test_decode_chars_stops_at_eos_and_skips_pad_and_bos():
    vocab = ["<pad>", "<unk>", "<bos>", "<eos>", "a", "b"]
    assert decode_chars(vocab, [BOS_INDEX, 4, 1, 5, EOS_INDEX, 4]) == "a\ufffdb"
    assert decode_chars(vocab, torch.tensor([4, -100, 5])) == "a"


# ---------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("one\t1\ntwo 2\n", r"pairs.tsv: line 2: expected source<TAB>target, found no TAB in 'two 2'"),
        ("one\t1\n\t2\n", r"pairs.tsv: line 2: the source \(before the TAB\) is empty"),
        ("one\t1\n\nthree\t\n", r"pairs.tsv: line 3: the target \(after the TAB\) is empty"),
        ("one\t1\t2\n", r"pairs.tsv: line 1: expected one TAB between source and target, found 2"),
        ("\n\n  \n", r"pairs.tsv: the parallel text file is empty"),
    ],
)
def test_bad_lines_are_named_by_file_and_line(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        load_task("seq2seq", write(tmp_path, text))


def test_an_empty_file_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"pairs.tsv: the parallel text file is empty"):
        load_task("seq2seq", write(tmp_path, ""))


def test_a_source_longer_than_max_source_len_names_line_and_length(tmp_path):
    path = write(tmp_path, PAIRS + "a very long source line\tx\n")
    with pytest.raises(
        DataError,
        match=r"pairs.tsv: line 13: the source is 23 characters long; the model takes "
        r"at most max_source_len=10",
    ):
        load_task("seq2seq", path, max_source_len=10)


def test_text_that_is_not_utf8_names_the_byte_offset(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_bytes(b"one\t1\ntw\xff\t2\n")
    with pytest.raises(DataError, match=r"pairs.tsv: not UTF-8 text: byte offset 8 \(line 2\)"):
        load_task("seq2seq", str(path))


def test_generated_sizes_are_refused_for_a_file_and_seq_len_for_any_source(tmp_path):
    with pytest.raises(ConfigError, match=r"n_train.*sizes the generated data only"):
        load_task("seq2seq", write(tmp_path, PAIRS), n_train=5)
    with pytest.raises(ConfigError, match="takes no seq_len"):
        load_task("seq2seq", seq_len=20, n_train=5, n_val=5, n_test=5)


def test_predict_inputs_take_sources_alone_or_with_targets(tmp_path):
    task = load_task("seq2seq", write(tmp_path, PAIRS), val_fraction=0.2, test_fraction=0.2)
    alone = predict_inputs(task.meta, write(tmp_path, "one\nnine\n", "new.txt"))
    assert alone.targets is None and [k["source"] for k in alone.keys] == ["one", "nine"]
    assert [k["line"] for k in alone.keys] == [1, 2]
    paired = predict_inputs(task.meta, write(tmp_path, "one\t1\n", "new.tsv"))
    assert paired.targets == ["1"]
    with pytest.raises(DataError, match=r"new2.txt: line 1: the source is 12 characters long.*max_source_len=5"):
        predict_inputs({**task.meta, "max_source_len": 5}, write(tmp_path, "twelve twelv\n", "new2.txt"))


# ---------------------------------------------------------------------------------------- dates
def test_every_surface_form_names_its_date_and_only_its_date():
    # Independent reference: each form parsed back by a rule per form must give the date again.
    months = {m.lower(): i + 1 for i, m in enumerate(dt.date(2000, k, 1).strftime("%B") for k in range(1, 13))}
    for day in range(0, DAY_COUNT, 997):
        date = dt.date.fromordinal(FIRST_DAY + day)
        forms = date_forms(date)
        assert len(forms) == FORM_COUNT == len(set(forms))
        assert forms[0] == f"{date.day} {date.strftime('%B')} {date.year}"
        assert forms[2] == date.strftime("%d.%m.%Y") and forms[3] == date.strftime("%Y/%m/%d")
        assert forms[4].startswith(date.strftime("%A, %B "))
        words = forms[7].split()
        assert words[0] == "the" and months[words[3]] == date.month


def test_number_words():
    assert [ordinal(n) for n in (1, 2, 3, 11, 12, 20, 21, 30, 31)] == [
        "first",
        "second",
        "third",
        "eleventh",
        "twelfth",
        "twentieth",
        "twenty-first",
        "thirtieth",
        "thirty-first",
    ]
    assert [year_words(y) for y in (1900, 1905, 1984, 2000, 2007, 2099)] == [
        "nineteen hundred",
        "nineteen oh five",
        "nineteen eighty-four",
        "two thousand",
        "two thousand and seven",
        "two thousand and ninety-nine",
    ]


def test_generated_dates_are_deterministic_disjoint_across_splits_and_of_varied_length():
    train = generate_dates(3000, seed=4, split="train")
    assert train == generate_dates(3000, seed=4, split="train")
    assert train != generate_dates(3000, seed=5, split="train")
    test = generate_dates(600, seed=4, split="test")
    val = generate_dates(300, seed=4, split="val")
    assert not {s for s, _, _ in train} & {s for s, _, _ in test}
    assert not {s for s, _, _ in val} & ({s for s, _, _ in test} | {s for s, _, _ in train})
    for _, target, _ in test[:50]:
        assert dt.date.fromisoformat(target).isoformat() == target
    lengths = [len(s) for s, _, _ in train]
    assert min(lengths) <= 11 and max(lengths) >= 60


def test_the_builtin_task_loads_with_its_sizes_and_a_copy_baseline():
    task = load_task("seq2seq", n_train=50, n_val=10, n_test=20)
    assert task.meta["data"] == "builtin:dates" and task.meta["sizes"] == {"train": 50, "val": 10, "test": 20}
    assert task.spec.output_shape == [11]  # YYYY-MM-DD and <eos>
    assert task.baselines == {"copy_source_exact_match": 0.0}
