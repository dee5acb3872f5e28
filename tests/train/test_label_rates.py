"""A multilabel head starts at the training label rates (rnnlab/models/heads.py, train/run.py)."""

import math

import pytest
import torch

from rnnlab.train import TrainConfig
from rnnlab.train.run import _build_model, load_task_data


@pytest.mark.parametrize("model", ["gru", "tcn"])
def test_the_music_head_starts_at_the_log_odds_of_each_keys_training_rate(tiny_files, model):
    config = TrainConfig(
        task="music", model=model, data=str(tiny_files["music"]), hidden_size=8, num_layers=1
    ).resolved()
    task = load_task_data(config)
    targets = torch.cat([task.train[i][1] for i in range(len(task.train))])
    q = (targets.sum(0) + 1) / (len(targets) + 2)  # add-one smoothed, as the marginal baseline
    untrained = _build_model(config, task).eval()
    assert torch.allclose(untrained.head.linear.bias.detach(), torch.log(q / (1 - q)), atol=1e-5)
    # so an untrained model scores near the marginal baseline, not near 88·ln 2
    pieces = [task.test[i] for i in range(len(task.test))]
    with torch.no_grad():
        nats = sum(
            torch.nn.functional.binary_cross_entropy_with_logits(untrained(x[None]), y[None], reduction="sum")
            for x, y in pieces
        )
    nll = nats / sum(len(y) for _, y in pieces)
    assert abs(float(nll) - task.baselines["marginal_nll"]) < abs(float(nll) - 88 * math.log(2))


def test_rates_of_the_wrong_length_are_refused():
    from rnnlab.models.heads import StepHead, start_at_label_rates

    with pytest.raises(ValueError, match="3 label rates for a head of 88 labels"):
        start_at_label_rates(StepHead(4, 88), [0.1, 0.2, 0.3])
