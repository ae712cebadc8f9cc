"""train.fit: class weights and the output bias."""

from __future__ import annotations

import numpy as np
import pytest

from train import fit


def test_class_weights_balance_the_loss_and_the_bias_follows_the_weighted_prior():
    counts = np.array([100.0, 300.0])
    weights = fit.class_weights(counts)
    np.testing.assert_allclose(counts * weights, [200.0, 200.0])
    assert fit.output_bias(counts, weights) == pytest.approx([0.0])
    assert fit.output_bias(counts, np.ones(2)) == pytest.approx([np.log(3.0)])
    assert fit.output_bias(np.array([1.0, 1.0, 2.0]), np.ones(3)) == pytest.approx(np.log([0.25, 0.25, 0.5]))
