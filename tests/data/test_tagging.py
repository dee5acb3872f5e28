"""Tagging data: CoNLL files and the generated entities task (rnnlab/data/tagging.py)."""

import pytest
import torch
from torch import nn

from rnnlab.data import load_task, make_loader, predict_inputs
from rnnlab.data.tagging import CUES_AFTER, CUES_BEFORE, NAMES, generate_entities, read_conll
from rnnlab.errors import ConfigError, DataError

CONLL = """-DOCSTART- -X- O O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

"""


def write_text(tmp_path, text, name="data.conll"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_conll_reads_token_first_and_tag_last_and_skips_docstart(tmp_path):
    sentences = read_conll(write_text(tmp_path, CONLL))
    assert [s.tokens for s in sentences] == [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]]
    assert [s.tags for s in sentences] == [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER"]]
    assert sentences[1].lines == [8, 9]


def test_a_line_without_a_tag_is_named(tmp_path):
    path = write_text(tmp_path, "EU B-ORG\nrejects\n")
    with pytest.raises(
        DataError, match=r"data.conll: line 2: expected a token and a tag separated by whitespace, got 'rejects'"
    ):
        read_conll(path)


def test_empty_conll_files_are_refused(tmp_path):
    with pytest.raises(DataError, match="the CoNLL file is empty"):
        read_conll(write_text(tmp_path, "\n\n"))
    with pytest.raises(DataError, match="no sentences"):
        read_conll(write_text(tmp_path, "-DOCSTART- O\n\n", "doc.conll"))


def conll_corpus(tmp_path, sentences=30, name="train.conll"):
    blocks = []
    for i in range(sentences):
        blocks.append("the DT O\ncat NN B-ANIMAL\n" + ("sat VB O\n" if i % 2 else "ran VB O\n"))
    return write_text(tmp_path, "\n".join(blocks), name)


def test_tag_task_from_conll_has_tags_and_vocabulary_from_training(tmp_path):
    task = load_task("tag", conll_corpus(tmp_path), min_freq=1)
    assert task.meta["tags"] == ["B-ANIMAL", "O"] and task.spec.num_classes == 2
    vocab = task.meta["vocab"]
    assert vocab[:2] == ["<pad>", "<unk>"] and set(vocab[2:]) == {"the", "cat", "sat", "ran"}
    x, y = task.train[0]
    assert [vocab[i] for i in x.tolist()][:2] == ["the", "cat"] and y.tolist() == [1, 0, 1]
    assert task.spec.causal is False and task.spec.head == "tag"


def test_unseen_words_map_to_unk_and_unseen_tags_are_named(tmp_path):
    train = conll_corpus(tmp_path)
    test = write_text(tmp_path, "the DT O\ndog NN B-ANIMAL\n\nthe DT O\nbird NN B-BIRD\n", "test.conll")
    with pytest.raises(
        DataError, match=r"test.conll: tag\(s\) 'B-BIRD' never occur in the training data \(at line 5\)"
    ):
        load_task("tag", train, test)
    fine = write_text(tmp_path, "the DT O\ndog NN B-ANIMAL\n", "fine.conll")
    task = load_task("tag", train, fine)
    assert task.test[0][0].tolist()[1] == task.meta["unk_index"]


def test_predict_inputs_read_untagged_conll(tmp_path):
    task = load_task("tag", conll_corpus(tmp_path))
    inputs = predict_inputs(task.meta, write_text(tmp_path, "the\ncat\n\nthe\nzebra\n", "new.conll"))
    assert inputs.targets is None and [k["tokens"] for k in inputs.keys] == [["the", "cat"], ["the", "zebra"]]
    vocab = task.meta["vocab"]
    assert [vocab[i] for i in inputs.x[1].tolist()] == ["the", "<unk>"]
    with pytest.raises(DataError, match=r"line 2: no tag here but tags on the lines before"):
        predict_inputs(task.meta, write_text(tmp_path, "the DT\ncat\n", "mixed.conll"))


def test_generated_sizes_apply_to_generated_data_only(tmp_path):
    with pytest.raises(ConfigError, match="sizes the generated data only"):
        load_task("tag", conll_corpus(tmp_path), n_train=10)


def test_entities_are_reproducible_and_every_name_has_a_cue_beside_its_mention():
    sentences = generate_entities(200, seed=4, split="train")
    again = generate_entities(200, seed=4, split="train")
    assert [s.tokens for s in sentences] == [s.tokens for s in again]
    assert [s.tokens for s in generate_entities(5, seed=4, split="test")] != [s.tokens for s in sentences[:5]]
    right_only = mentions = 0
    for sentence in sentences:
        tokens, tags = sentence.tokens, sentence.tags
        for start, tag in enumerate(tags):
            if not tag.startswith("B-"):
                continue
            kind = tag[2:]
            stop = start + 1
            while stop < len(tags) and tags[stop] == "I-" + kind:
                stop += 1
            before = tokens[start - 1] if start > 0 else None
            after = tokens[stop] if stop < len(tokens) else None
            cued_before, cued_after = before in CUES_BEFORE[kind], after in CUES_AFTER[kind]
            assert cued_before or cued_after
            assert all(t in NAMES for t in tokens[start:stop])
            mentions += 1
            right_only += cued_after and not cued_before
    assert 0.4 < right_only / mentions < 0.6  # half the mentions are cued only from the right


def train_tagger(task, bidirectional, epochs=5):
    torch.manual_seed(0)
    embedding = nn.Embedding(task.spec.vocab_size, 16)
    lstm = nn.LSTM(16, 24, batch_first=True, bidirectional=bidirectional)
    output = nn.Linear(48 if bidirectional else 24, task.spec.num_classes)
    modules = nn.ModuleList([embedding, lstm, output])
    optimizer = torch.optim.Adam(modules.parameters(), lr=1e-2)
    for epoch in range(epochs):
        for batch in make_loader(task.train, 32, shuffle=True, seed=epoch):
            hidden, _ = lstm(embedding(batch.x))
            loss = nn.functional.cross_entropy(output(hidden).transpose(1, 2), batch.y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        batch = next(iter(make_loader(task.test, len(task.test), shuffle=False)))
        predicted = output(lstm(embedding(batch.x))[0]).argmax(-1)
    names = batch.y != task.meta["tags"].index("O")
    return float((predicted[names & (batch.y != -100)] == batch.y[names & (batch.y != -100)]).float().mean())


def test_a_bidirectional_tagger_beats_a_left_to_right_one_on_entities():
    task = load_task("tag", "entities", n_train=300, n_val=10, n_test=150)
    left_to_right, bidirectional = train_tagger(task, False, epochs=10), train_tagger(task, True, epochs=10)
    # measured: 0.41 against 0.94 of the name tokens tagged right
    assert bidirectional > left_to_right + 0.25


@pytest.mark.slow
def test_only_a_bidirectional_tagger_can_tag_every_entity():
    task = load_task("tag", "entities", n_train=2000, n_val=10, n_test=300)
    left_to_right, bidirectional = train_tagger(task, False, epochs=10), train_tagger(task, True, epochs=10)
    # half the mentions are cued only from the right: a left-to-right reader guesses their type
    # (1 in 3), so it can reach at most about 1/2 + 1/2 · 1/3 ≈ 0.67 of the name tokens
    assert bidirectional > 0.97
    assert left_to_right < 0.72


def test_entity_baselines_show_names_need_context():
    task = load_task("tag", n_train=200, n_val=20, n_test=100)
    assert task.meta["data"] == "builtin:entities"
    assert task.baselines["word_majority_accuracy"] < 0.95
    assert task.baselines["word_majority_macro_f1"] < 0.5


def test_tag_options_that_do_not_apply_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="takes no seq_len"):
        load_task("tag", seq_len=5)
    with pytest.raises(ConfigError, match="test_data applies to CoNLL files"):
        load_task("tag", "entities", conll_corpus(tmp_path))
    with pytest.raises(DataError, match=r"7 sentences are too few to hold out a validation part"):
        load_task("tag", conll_corpus(tmp_path, sentences=7, name="few.conll"), val_fraction=0.05, test_fraction=0.05)


def test_a_file_with_one_tag_only_is_refused_naming_it(tmp_path):
    one_tag = "".join(f"word{i} O\n" + ("\n" if i % 3 == 2 else "") for i in range(60))
    path = write_text(tmp_path, one_tag)
    with pytest.raises(DataError, match=r"data.conll: the tag column holds one tag only \('O' on all \d+ training"):
        load_task("tag", path)
