"""Sequence classification data: wide, long and text CSVs, digits (rnnlab/data/classify.py)."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import f1_score

from rnnlab.data import load_task, predict_inputs
from rnnlab.data.classify import macro_f1
from rnnlab.errors import ConfigError, DataError


def write_text(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def wide_csv(tmp_path, rows=40, name="wide.csv"):
    lines = ["label,s1,s2,s3,s4"]
    for i in range(rows):
        values = [str(i + k) for k in range(2 + i % 3)]  # 2 to 4 steps, empty trailing cells
        lines.append(",".join(["up" if i % 2 else "down", *values, *[""] * (4 - len(values))]))
    return write_text(tmp_path, "\n".join(lines) + "\n", name)


def test_wide_rows_are_sequences_of_their_filled_cells_scaled_on_training(tmp_path):
    task = load_task("classify", wide_csv(tmp_path), val_fraction=0.25, test_fraction=0.25)
    assert task.meta["format"] == "wide" and task.spec.input_size == 1 and task.spec.num_classes == 2
    assert task.meta["label_names"] == ["down", "up"]
    assert sorted(task.train.lengths.tolist() + task.val.lengths.tolist() + task.test.lengths.tolist()) == sorted(
        2 + i % 3 for i in range(40)
    )
    train_values = np.concatenate([task.train[i][0].numpy()[:, 0] for i in range(len(task.train))])
    assert train_values.mean() == pytest.approx(0, abs=1e-5) and train_values.std() == pytest.approx(1, abs=1e-4)
    mean, std = task.meta["scaler"]["mean"][0], task.meta["scaler"]["std"][0]
    test_raw = np.concatenate([task.test[i][0].numpy()[:, 0] * std + mean for i in range(len(task.test))])
    assert np.allclose(test_raw, np.round(test_raw), atol=1e-3)  # the raw integers come back


def test_a_gap_inside_a_wide_row_is_refused_with_line_and_column(tmp_path):
    path = write_text(tmp_path, "label,a,b,c\nx,1,2,3\ny,1,,3\n")
    with pytest.raises(DataError, match=r"line 3 column 'b': missing value inside the sequence"):
        load_task("classify", path)


def test_a_non_number_in_a_wide_row_is_named(tmp_path):
    path = write_text(tmp_path, "label,a,b\nx,1,2\ny,1,two\n")
    with pytest.raises(DataError, match=r"line 3 column 'b': 'two'"):
        load_task("classify", path, format="wide")


def long_rows(count=30):
    rows = []
    for i in range(count):
        for t in range(3 + i % 3):
            rows.append((f"s{i}", t, i + t, 10 * t, "walk" if i % 2 else "run"))
    return rows


def test_long_rows_group_into_time_ordered_multivariate_sequences(tmp_path):
    rows = long_rows()
    shuffled = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
    text = "id,time,speed,height,label\n" + "".join(",".join(map(str, r)) + "\n" for r in shuffled)
    task = load_task("classify", write_text(tmp_path, text), val_fraction=0.2, test_fraction=0.2)
    assert task.meta["format"] == "long" and task.meta["features"] == ["speed", "height"]
    assert task.spec.input_size == 2
    mean, std = np.array(task.meta["scaler"]["mean"]), np.array(task.meta["scaler"]["std"])
    for split in (task.train, task.val, task.test):
        for i in range(len(split)):
            x = split[i][0].numpy() * std + mean
            assert np.allclose(np.diff(x[:, 1]), 10, atol=1e-3)  # rows put back in time order
            assert len(x) in (3, 4, 5)


def test_long_sequences_with_two_labels_or_a_repeated_time_are_refused(tmp_path):
    mixed = write_text(tmp_path, "id,time,v,label\na,0,1,x\na,1,2,y\nb,0,1,x\n", "mixed.csv")
    with pytest.raises(DataError, match=r"sequence 'a' has more than one label \(line 2: 'x', line 3: 'y'\)"):
        load_task("classify", mixed)
    repeated = write_text(tmp_path, "id,time,v,label\na,0,1,x\na,0,2,x\n", "repeated.csv")
    with pytest.raises(DataError, match=r"sequence 'a' has time '0' twice \(lines 2 and 3\)"):
        load_task("classify", repeated)


def test_text_rows_become_word_ids_with_a_vocabulary_from_training_only(tmp_path):
    lines = ["text,label"] + ['"A good film, really good",pos' if i % 2 else '"A bad film",neg' for i in range(20)]
    lines.append('"zebra film",pos')  # a word that lands in one split only
    task = load_task(
        "classify",
        write_text(tmp_path, "\n".join(lines) + "\n"),
        min_freq=1,
        val_fraction=0.2,
        test_fraction=0.2,
        seed=3,
    )
    assert task.meta["format"] == "text" and task.spec.vocab_size == len(task.meta["vocab"])
    vocab = task.meta["vocab"]
    assert vocab[:2] == ["<pad>", "<unk>"] and {"good", "bad", "film", ",", "a"} <= set(vocab)
    train_words = {vocab[i] for k in range(len(task.train)) for i in task.train[k][0].tolist()}
    assert set(vocab[2:]) == train_words - {"<unk>"}
    ids = {tuple(task.train[k][0].tolist()) for k in range(len(task.train))}
    index = {w: i for i, w in enumerate(vocab)}
    assert tuple(index[w] for w in ["a", "bad", "film"]) in ids


def test_rare_words_become_unk(tmp_path):
    lines = ["text,label"] + ["common word,a", "common other,b"] * 10 + ["common unique,a"]
    task = load_task("classify", write_text(tmp_path, "\n".join(lines) + "\n"), min_freq=2)
    assert "unique" not in task.meta["vocab"] and "word" in task.meta["vocab"]


def test_format_detection_and_override(tmp_path):
    one_text_column = write_text(tmp_path, "review,label\n" + "nice one,p\nawful,n\n" * 10, "reviews.csv")
    assert load_task("classify", one_text_column).meta["format"] == "text"
    with pytest.raises(DataError, match=r"no column 'text' \(option text\)"):
        load_task("classify", one_text_column, format="text")
    assert load_task("classify", one_text_column, format="text", text="review").meta["text_column"] == "review"


def test_labels_unseen_in_training_are_named_with_their_lines(tmp_path):
    train = wide_csv(tmp_path, name="train.csv")
    test = write_text(tmp_path, "label,s1,s2\nup,1,2\nsideways,3,4\ndown,1,1\nbackwards,0,1\n", "test.csv")
    with pytest.raises(
        DataError,
        match=r"test.csv: label\(s\) 'backwards', 'sideways' never occur in the training "
        r"data \(at line 3, line 5\)",
    ):
        load_task("classify", train, test)


def test_a_missing_label_column_or_label_is_named(tmp_path):
    with pytest.raises(DataError, match=r"no column 'label' \(option label\).*columns present: class, a"):
        load_task("classify", write_text(tmp_path, "class,a\nx,1\n"))
    with pytest.raises(DataError, match=r"line 3: the label column 'label' is empty"):
        load_task("classify", write_text(tmp_path, "label,a\nx,1\n,2\n", "b.csv"))


def test_bad_csv_structure_is_named(tmp_path):
    with pytest.raises(DataError, match=r"line 3 has 4 cells but the header has 3 columns"):
        load_task("classify", write_text(tmp_path, "label,a,b\nx,1,2\ny,1,2,3\n"))
    with pytest.raises(DataError, match=r"column name 'a' appears twice"):
        load_task("classify", write_text(tmp_path, "label,a,a\nx,1,2\n", "dup.csv"))
    with pytest.raises(DataError, match=r"empty.csv: the CSV file is empty"):
        load_task("classify", write_text(tmp_path, "", "empty.csv"))
    (tmp_path / "latin.csv").write_bytes("label,a\ncaf\xe9,1\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.csv: not UTF-8 text: byte offset 11 \(line 2\)"):
        load_task("classify", str(tmp_path / "latin.csv"))


def test_a_split_keeps_every_label_in_training(tmp_path):
    lines = ["label,a"] + [f"common,{i}" for i in range(30)] + ["rare,1"]
    task = load_task("classify", write_text(tmp_path, "\n".join(lines) + "\n"))
    assert task.meta["label_names"] == ["common", "rare"]
    assert task.meta["sizes"] == {"train": 25, "val": 3, "test": 3}


def test_digits_are_sklearn_images_read_row_by_row_with_a_stratified_split():
    task = load_task("classify", "digits")
    assert task.spec.input_size == 8 and task.spec.seq_len == 8 and task.spec.num_classes == 10
    reference = load_digits()
    x, y = task.train[0]
    matches = [i for i in range(len(reference.target)) if np.allclose(reference.images[i] / 16, x.numpy())]
    assert matches and reference.target[matches[0]] == int(y)
    for split in (task.train, task.val, task.test):
        labels = np.array([int(split[i][1]) for i in range(len(split))])
        shares = np.bincount(labels, minlength=10) / len(labels)
        assert np.allclose(shares, 0.1, atol=0.02)
    assert len(task.train) + len(task.val) + len(task.test) == 1797


def test_predict_inputs_encode_a_new_file_like_the_training_data(tmp_path):
    task = load_task("classify", wide_csv(tmp_path), seed=1)
    new = write_text(tmp_path, "s1,s2,s3,s4\n5,6,7,\n1,2,,\n", "new.csv")
    inputs = predict_inputs(task.meta, new)
    mean, std = task.meta["scaler"]["mean"][0], task.meta["scaler"]["std"][0]
    assert inputs.targets is None and inputs.keys == [{"line": 2}, {"line": 3}]
    assert torch.allclose(inputs.x[0][:, 0], (torch.tensor([5.0, 6, 7]) - mean) / std)
    labelled = predict_inputs(task.meta, wide_csv(tmp_path, rows=3, name="again.csv"))
    assert labelled.targets == ["down", "up", "down"]


def test_predict_inputs_for_text_use_the_saved_vocabulary(tmp_path):
    lines = ["text,label"] + ["good day,p", "bad day,n"] * 10
    task = load_task("classify", write_text(tmp_path, "\n".join(lines) + "\n"))
    inputs = predict_inputs(task.meta, write_text(tmp_path, "text\nGood night\n", "new.csv"))
    vocab = task.meta["vocab"]
    assert [vocab[i] for i in inputs.x[0].tolist()] == ["good", "<unk>"]


def test_classify_takes_no_seq_len():
    with pytest.raises(ConfigError, match="takes no seq_len"):
        load_task("classify", seq_len=10)


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    truth = rng.choice(["a", "b", "c", "d"], size=50, p=[0.5, 0.3, 0.15, 0.05])
    predicted = rng.choice(["a", "b", "c", "e"], size=50)
    assert macro_f1(truth, predicted) == pytest.approx(f1_score(truth, predicted, average="macro", zero_division=0))


@pytest.mark.parametrize(
    "text, options, message",
    [
        ("id,time,v,label\na,0,1,x\na,1,,x\n", {}, r"line 3 column 'v': missing value \(1 missing in all\)"),
        ("id,time,v,label\na,0,1,x\n,1,2,x\n", {}, r"line 3: the id column 'id' is empty"),
        ("id,time,label\na,0,x\n", {}, r"no feature columns beside 'id', 'time' and the label"),
        ("id,time,v,label\na,0,1,x\na,soon,2,x\n", {}, r"line 3 column 'time': 'soon' is neither a number nor a date"),
        ("id,time,v,label\na,0,1,x\n", {"features": "w"}, r"no column 'w' \(option features\)"),
        ("text,label\nhello,x\n...,y\n  ,y\n", {}, r"line 4: the text column 'text' is empty"),
        ("label\nx\n", {"format": "wide"}, r"no value columns beside the label 'label'"),
        ("label,a,b\nx,1,2\ny,,\n", {}, r"line 3 has no values"),
        ("label,a\nx,1\n", {"format": "columns"}, r"unknown classify format 'columns'"),
        ("label,a\nx,1\ny,2\n", {}, r"2 sequences are too few to hold out a validation part"),
    ],
)
def test_more_bad_classification_files_are_refused_with_the_reason(tmp_path, text, options, message):
    with pytest.raises((DataError, ConfigError), match=message):
        load_task("classify", write_text(tmp_path, text), **options)


def test_predict_inputs_refuse_a_file_of_another_width(tmp_path):
    rows = "".join(f"s{i},{t},{t},{t * 2},{'a' if i % 2 else 'b'}\n" for i in range(20) for t in range(3))
    task = load_task("classify", write_text(tmp_path, "id,time,p,q,label\n" + rows))
    narrow = write_text(tmp_path, "id,time,p\nz,0,1\nz,1,2\n", "narrow.csv")
    with pytest.raises(DataError, match=r"no column 'q' \(option features\)"):
        predict_inputs(task.meta, narrow)
    digits = load_task("classify", "digits")
    with pytest.raises(ConfigError, match="built-in digits"):
        predict_inputs(digits.meta, narrow)
    with pytest.raises(ConfigError, match="test_data applies to CSV files"):
        load_task("classify", "digits", narrow)


def scaled_wide_csv(tmp_path, scales, name="scaled.csv"):
    """Sine waves of 20 steps, one per scale; the label is the wave's frequency (1 or 2 cycles)."""
    t = np.arange(20)
    lines = ["label," + ",".join(f"t{k}" for k in t)]
    for i, scale in enumerate(scales):
        cycles = 1 + i % 2
        wave = 3.0 * scale + scale * np.sin(2 * np.pi * cycles * t / 20)
        lines.append(",".join([f"c{cycles}", *(f"{v:.6g}" for v in wave)]))
    return write_text(tmp_path, "\n".join(lines) + "\n", name)


def test_auto_normalisation_z_normalises_series_whose_scales_span_orders_of_magnitude(tmp_path):
    spread = scaled_wide_csv(tmp_path, [10.0 ** (i % 5) for i in range(40)], "spread.csv")  # 1 to 10^4
    task = load_task("classify", spread, val_fraction=0.25, test_fraction=0.25)
    assert task.meta["scaler"]["per_series"] and task.meta["scaler"]["scale_span"] > 1000
    for split in (task.train, task.test):
        for i in range(len(split)):
            x = split[i][0].numpy()[:, 0]
            assert x.mean() == pytest.approx(0, abs=1e-5) and x.std() == pytest.approx(1, abs=1e-4)
    # a new file is scaled the same way, whatever its own scales
    inputs = predict_inputs(task.meta, scaled_wide_csv(tmp_path, [1e6, 1e-3], "new.csv"))
    assert all(x.numpy().std() == pytest.approx(1, abs=1e-4) for x in inputs.x)

    narrow = scaled_wide_csv(tmp_path, [1.0 + (i % 5) for i in range(40)], "narrow.csv")  # 1 to 5: one scale
    kept = load_task("classify", narrow, val_fraction=0.25, test_fraction=0.25)
    assert not kept.meta["scaler"]["per_series"] and kept.meta["scaler"]["scale_span"] <= 5
    forced = load_task("classify", narrow, val_fraction=0.25, test_fraction=0.25, normalise="series")
    assert forced.meta["scaler"]["per_series"]
    with pytest.raises(ConfigError, match="normalise"):
        load_task("classify", narrow, normalise="z")
