"""weights/learning_curve.py: the power-law fit of the rounds' learning curve."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

WEIGHTS = Path(__file__).parents[1] / "weights"
spec = importlib.util.spec_from_file_location("learning_curve", WEIGHTS / "learning_curve.py")
learning_curve = importlib.util.module_from_spec(spec)
spec.loader.exec_module(learning_curve)


def test_fit_recovers_a_known_power_law() -> None:
    s = np.array([0.7, 1.9, 3.7, 5.5, 7.3, 9.7])
    loss = learning_curve.power_law(s, 0.17, 0.2, 0.85)
    a, b, c = learning_curve.fit_power_law(s, loss)
    assert (a, b, c) == pytest.approx((0.17, 0.2, 0.85), rel=1e-4)
    with pytest.raises(ValueError, match="3 points"):
        learning_curve.fit_power_law(s[:2], loss[:2])


def test_the_rounds_file_is_a_learning_curve() -> None:
    models = learning_curve.by_model(learning_curve.read_rounds(WEIGHTS / "learning-curve.csv"))
    assert "hae-z128-bm5" in models
    for model, (rounds, samples, loss) in models.items():
        numbers = [int(r["round"].split()[0]) for r in rounds]  # "7 mid-way": an earlier ship
        # rounds in order, starting at 1; a round never evaluated has no row (hae-z256 round 2)
        assert numbers == sorted(numbers) and numbers[0] == 1, model
        assert list(samples) == sorted(samples) and len(set(samples)) == len(samples), model
        assert all(0 < v < 1 for v in loss), model
