"""holoprot.training.averaging.WeightAverage (the trainer's use of it: tests/test_training.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from holoprot.training.averaging import WeightAverage


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def _float_state(module: nn.Module) -> dict[str, np.ndarray]:
    state = module.state_dict().items()
    return {k: v.double().numpy().copy() for k, v in state if v.is_floating_point()}


def test_average_follows_its_formula_by_hand() -> None:
    """avg ← d_t avg + (1 − d_t) θ_t with d_t = min(decay, (1 + t)/(10 + t)); counters copied."""
    torch.manual_seed(0)
    model = _model()
    average = WeightAverage(model, decay=0.5)
    expected = _float_state(model)
    decays = []
    for t in range(1, 11):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(8, 3))  # moves the batch-norm statistics and its counter
        d = min(0.5, (1 + t) / (10 + t))
        decays.append(d)
        assert average.current_decay() == d
        average.update(model)
        current = _float_state(model)
        expected = {k: d * expected[k] + (1 - d) * current[k] for k in expected}
        got = _float_state(average.module)
        for k in expected:  # float32 state, one rounding per update: relative 1e-6
            np.testing.assert_allclose(got[k], expected[k], rtol=1e-6, atol=1e-7, err_msg=k)
        assert int(average.module[1].num_batches_tracked) == t
    assert average.updates == 10 and not average.module.training
    assert all(not p.requires_grad for p in average.module.parameters())
    assert decays[0] == pytest.approx(2 / 11) and decays[6] < 0.5 and decays[7:] == [0.5] * 3


def test_average_starts_as_a_copy_and_refuses_bad_decays() -> None:
    model = _model()
    average = WeightAverage(model, decay=0.99)
    assert average.current_decay() == pytest.approx(2 / 11)
    for k, v in _float_state(model).items():
        np.testing.assert_array_equal(_float_state(average.module)[k], v)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert not torch.equal(average.module[0].weight, model[0].weight)  # a copy, not a view
    for decay in (0.0, 1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="decay"):
            WeightAverage(model, decay)
