"""The lab's seq2seq measures and figures: exact match by source length, attention alignments
(rnnlab/lab/measures.py, report.py, the results schema)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from rnnlab.data import collate, load_task
from rnnlab.data.seq2seq import decode_chars
from rnnlab.lab import report
from rnnlab.lab.measures import alignment_examples, exact_match_by_source_length, measure_alignments
from rnnlab.lab.report import render_html
from rnnlab.lab.results import validate
from rnnlab.models import build_model
from rnnlab.train.metrics import levenshtein

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))
from lab_fixtures import make_cell, make_results


def tiny_task_and_model(name="lstm+attn"):
    task = load_task("seq2seq", n_train=40, n_val=10, n_test=30)
    torch.manual_seed(0)
    model = build_model(name, task.spec, hidden_size=8, num_layers=1, max_output_len=12).eval()
    with torch.no_grad():  # sharpen the untrained output so that decodes differ from sample to sample
        model.head.weight.mul_(10)
    return task, model


def test_exact_match_by_source_length_matches_decoding_each_sample_alone():
    task, model = tiny_task_and_model()
    buckets = exact_match_by_source_length(model, task.test, task.meta, batch_size=16, min_count=1)["buckets"]
    assert sum(b["count"] for b in buckets) == len(task.test)
    assert all(b["min"] <= b["max"] for b in buckets) and len(buckets) > 1
    merged = exact_match_by_source_length(model, task.test, task.meta, min_count=8)["buckets"]
    assert sum(b["count"] for b in merged) == len(task.test) and all(b["count"] >= 8 for b in merged[1:])
    assert merged[-1]["max"] == buckets[-1]["max"] and len(merged) < len(buckets)
    # reference: each test source decoded alone (no padding), compared as text
    vocab = task.meta["target_vocab"]
    for bucket in buckets:
        edits = characters = exact = 0
        for x, y in task.test:
            if not bucket["min"] <= len(x) <= bucket["max"]:
                continue
            output = decode_chars(vocab, model(x.unsqueeze(0))[0])
            target = decode_chars(vocab, y)
            edits += levenshtein(output, target)
            characters += len(target)
            exact += output == target
        assert abs(bucket["cer"] - edits / characters) < 1e-9
        assert abs(bucket["exact_match"] - exact / bucket["count"]) < 1e-9


def test_alignment_examples_span_the_source_lengths():
    task, _ = tiny_task_and_model()
    lengths = [len(x) for x, _ in task.test]
    chosen = [lengths[i] for i in alignment_examples(task.test, 4)]
    assert chosen == sorted(chosen) and chosen[0] == min(lengths) and chosen[-1] == max(lengths)


def test_alignments_hold_the_decoder_attention_as_text_and_weights():
    task, model = tiny_task_and_model()
    batch = collate([task.test[i] for i in range(3)])
    maps = measure_alignments(model, batch.x, batch.lengths, batch.y, task.meta)
    assert len(maps) == 3
    for row, example in enumerate(maps):
        length = int(batch.lengths[row])
        assert len(example["source"]) == length and len(example["target"]) == 10
        assert len(example["weights"]) == min(len(example["output"]) + 1, model.max_output_len)
        for weights in example["weights"]:
            assert len(weights) == length and abs(sum(weights) - 1) < 1e-3
    assert (
        measure_alignments(build_model("lstm", task.spec, hidden_size=8), batch.x, batch.lengths, batch.y, task.meta)
        is None
    )


def test_the_report_shows_exact_match_by_source_length_and_alignment_heatmaps():
    task, model = tiny_task_and_model()
    batch = collate([task.test[i] for i in range(2)])
    maps = measure_alignments(model, batch.x, batch.lengths, batch.y, task.meta)
    by_length = exact_match_by_source_length(model, task.test, task.meta)
    cells = []
    for name, attention in (("lstm+attn", maps), ("lstm", None)):
        cell = make_cell(name, None, metric="exact_match", value=0.5, num_classes=None)
        cell.update(alignments=attention, by_source_length=by_length)
        cells.append(cell)
    results = make_results(cells, task="seq2seq")
    validate(results)
    # the two seq2seq figures only (drawing every figure of the report is slow, and others test it)
    figures = {
        figure.name: figure for figure in (report._exact_match_by_source_length(results), report._alignments(results))
    }
    assert set(figures) == {"exact_match_vs_source_length", "alignments"}
    assert figures["alignments"].png.startswith(b"\x89PNG")
    html = render_html(results, list(figures.values()))
    assert "exact_match_vs_source_length.png" in html and "alignments.png" in html
