"""Metrics against hand-computed cases."""

import pytest

from videosafety.metrics import accuracy, auroc


def test_auroc_hand_cases():
    assert auroc([0.1, 0.9], [0, 1]) == 1.0
    assert auroc([0.9, 0.1], [0, 1]) == 0.0
    assert auroc([0.5, 0.5], [0, 1]) == 0.5  # a tie counts half
    # positives 0.8, 0.4; negatives 0.6, 0.2: pairs won 3 of 4
    assert auroc([0.8, 0.4, 0.6, 0.2], [1, 1, 0, 0]) == pytest.approx(0.75)
    # ties across classes: pos {0.5, 0.9}, neg {0.5, 0.1}: (0.5 + 1) + (1 + 1) = 3.5 of 4
    assert auroc([0.5, 0.9, 0.5, 0.1], [1, 1, 0, 0]) == pytest.approx(3.5 / 4)
    assert auroc([0.3, 0.4], [1, 1]) is None
    with pytest.raises(ValueError):
        auroc([0.1], [0, 1])


def test_accuracy():
    assert accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    assert accuracy([], []) is None
