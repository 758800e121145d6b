"""evaluation.probes: logistic probe, nearest-neighbour agreement and the majority class."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from holoprot.errors import HoloprotError
from holoprot.evaluation.probes import knn_agreement, logistic_probe, majority_class

Blobs = Callable[..., tuple[np.ndarray, np.ndarray]]


def test_logistic_probe_separable_shuffled_and_bit_for_bit_reproducible(blobs: Blobs) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(3, 8))
    x_train, y_train = blobs(rng, 600, centres, list("HEC"))
    x_test, y_test = blobs(rng, 300, centres, list("HEC"))
    fit = logistic_probe(x_train, y_train, x_test, y_test, seed=0)
    assert fit["correct"].shape == (300,) and fit["correct"].mean() > 0.95 and fit["converged"]
    again = logistic_probe(x_train, y_train, x_test, y_test, seed=0)
    assert np.array_equal(again["correct"], fit["correct"])
    assert np.array_equal(again["predicted"], fit["predicted"])
    shuffled = logistic_probe(x_train, rng.permutation(y_train), x_test, y_test, seed=0)
    assert shuffled["correct"].mean() < 0.5  # chance: 1/3


def test_knn_agreement_by_hand() -> None:
    """1-D points 0, 1, 2 (label a) and 10, 11 (label b); k = 2; standardising does not change
    the neighbours in one dimension."""
    x_train = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    y_train = np.array(["a", "a", "a", "b", "b"])
    x_test = np.array([[0.4], [10.4], [6.1], [6.0]])
    y_test = np.array(["a", "b", "a", "b"])
    # neighbours: {0, 1}, {10, 11}, {2, 10}, {2, 10} (6.0 is nearer 2 than 11)
    got = knn_agreement(x_train, y_train, x_test, y_test, k=2)
    np.testing.assert_array_equal(got, [1.0, 1.0, 0.5, 0.5])
    with pytest.raises(HoloprotError, match="at least k"):
        knn_agreement(x_train, y_train, x_test, y_test, k=6)


def test_majority_class_and_chance_agreement() -> None:
    y_train = np.array(["C", "C", "C", "H", "E", "E"])
    y_test = np.array(["C", "H", "E", "X"])
    m = majority_class(y_train, y_test)
    assert m["predicted_class"] == "C"
    np.testing.assert_array_equal(m["correct"], [1, 0, 0, 0])
    np.testing.assert_allclose(m["knn"], [0.5, 1 / 6, 1 / 3, 0.0])
    with pytest.raises(HoloprotError, match="two classes"):
        majority_class(np.array(["C", "C"]), y_test)
