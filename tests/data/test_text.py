"""Character-level language-model data (rnnlab/data/text.py)."""

import itertools
import math
from collections import Counter

import pytest
import torch

from rnnlab.data import load_task
from rnnlab.data.text import decode_text, unknown_characters
from rnnlab.errors import DataError

ENGLISH = "It was the best of times, it was the worst of times, it was the age of wisdom. " * 12


def write_text(tmp_path, text, name="corpus.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_windows_are_next_character_pairs_and_every_held_out_character_is_scored_once(tmp_path):
    task = load_task("charlm", write_text(tmp_path, ENGLISH), seq_len=32)
    vocab = task.meta["vocab"]
    n = len(ENGLISH)
    n_val = n_test = round(n * 0.05)
    n_train = n - n_val - n_test
    assert task.meta["split_chars"] == {"train": n_train, "val": n_val, "test": n_test}
    x, y = task.train[3]
    assert decode_text(vocab, x) == ENGLISH[96:128] and decode_text(vocab, y) == ENGLISH[97:129]
    assert len(task.train) == (n_train - 1) // 32 and (task.train.lengths == 32).all()
    for split, part in ((task.val, ENGLISH[n_train : n_train + n_val]), (task.test, ENGLISH[n_train + n_val :])):
        assert int(split.lengths.sum()) == len(part) - 1
        targets = "".join(decode_text(vocab, split[i][1]) for i in range(len(split)))
        assert targets == part[1:]


def test_token_streams_are_the_encoded_parts(tmp_path):
    task = load_task("charlm", write_text(tmp_path, ENGLISH), seq_len=16)
    joined = "".join(decode_text(task.meta["vocab"], s.tokens) for s in (task.train, task.val, task.test))
    assert joined == ENGLISH
    assert task.train.tokens.dtype == torch.long


def test_chinese_text_gets_a_character_vocabulary(tmp_path):
    text = "我从小在法国长大，所以我能说一口流利的法语。" * 30
    task = load_task("charlm", write_text(tmp_path, text), seq_len=20)
    assert {"法", "国", "语", "。"} <= set(task.meta["vocab"])
    x, _y = task.train[0]
    assert decode_text(task.meta["vocab"], x) == text[:20]


def test_rare_and_unseen_characters_become_unk(tmp_path):
    text = "ab" * 200 + "c" + "ab" * 30 + "z" + "ab" * 20
    task = load_task("charlm", write_text(tmp_path, text), seq_len=10, min_freq=2)
    assert task.meta["vocab"] == ["<unk>", "a", "b"]
    assert unknown_characters(task.meta, "abcz!") == ["c", "z", "!"]
    assert task.meta["unk_share"]["train"] == pytest.approx(1 / len(task.train.tokens))


def test_ngram_baselines_match_a_hand_count(tmp_path):
    text = "abracadabra, abracadabra! " * 30 + "cab dab"
    task = load_task("charlm", write_text(tmp_path, text), seq_len=8, min_freq=1)
    n = len(text)
    n_train = n - 2 * round(n * 0.05)
    train, test = text[:n_train], text[n - round(n * 0.05) :]
    vocab_size = len(set(train)) + 1
    counts, pairs, before = Counter(train), Counter(itertools.pairwise(train)), Counter(train[:-1])
    unigram = [-math.log2((counts[c] + 1) / (len(train) + vocab_size)) for c in test[1:]]
    bigram = [-math.log2((pairs[(b, c)] + 1) / (before[b] + vocab_size)) for b, c in itertools.pairwise(test)]
    assert task.baselines["unigram_bpc"] == pytest.approx(sum(unigram) / len(unigram))
    assert task.baselines["bigram_bpc"] == pytest.approx(sum(bigram) / len(bigram))
    assert task.baselines["bigram_bpc"] < task.baselines["unigram_bpc"]


def test_an_empty_file_is_refused_with_its_name(tmp_path):
    with pytest.raises(DataError, match=r"empty.txt: the text file is empty"):
        load_task("charlm", write_text(tmp_path, "  \n", "empty.txt"))


def test_undecodable_bytes_are_named_with_their_byte_offset(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("héllo wörld\n".encode() + b"caf\xe9 au lait\n" * 5)
    with pytest.raises(DataError, match=r"latin.txt: not UTF-8 text: byte offset 17 \(line 2\) holds b'\\xe9'"):
        load_task("charlm", str(path))


def test_a_text_shorter_than_one_window_says_how_long_it_is(tmp_path):
    with pytest.raises(
        DataError,
        match=r"the text has 60 characters; its training part \(54\) is shorter than one "
        r"training window of seq_len \+ 1 = 101",
    ):
        load_task("charlm", write_text(tmp_path, "x" * 60))


def test_a_separate_test_file_is_the_test_part(tmp_path):
    task = load_task(
        "charlm", write_text(tmp_path, ENGLISH), write_text(tmp_path, "the worst of wisdom", "test.txt"), seq_len=16
    )
    assert task.meta["split_chars"]["test"] == len("the worst of wisdom")
    assert task.meta["split_chars"]["train"] + task.meta["split_chars"]["val"] == len(ENGLISH)


def test_the_builtin_corpus_is_the_pydoc_topics():
    from pydoc_data.topics import topics

    task = load_task("charlm")
    assert task.meta["data"] == "builtin:pydoc"
    text = "".join(decode_text(task.meta["vocab"], s.tokens) for s in (task.train, task.val, task.test))
    assert topics["assert"].strip() in text
    assert task.baselines["unigram_bpc"] > task.baselines["bigram_bpc"] > 2.5


def test_a_test_part_too_short_to_score_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"one.txt: the test part has 1 character\(s\), at least 2 are needed"):
        load_task("charlm", write_text(tmp_path, ENGLISH), write_text(tmp_path, "x", "one.txt"), seq_len=16)
    with pytest.raises(DataError, match=r"is a folder, expected a text file"):
        load_task("charlm", str(tmp_path))
