import math

import pytest
import torch

from tinygpt.lab.demos.softmax_saturation import renorm_breaking_gap, softmax_stats


def test_unscaled_scores_spread_like_sqrt_d_and_saturate_the_softmax():
    small, large = (softmax_stats(d, keys=32, rows=200, scaled=False) for d in (4, 1024))
    assert large["score_std"] / small["score_std"] == pytest.approx(math.sqrt(1024 / 4), rel=0.15)
    assert large["max_weight"] > 0.8 and large["jacobian"] < 0.5 * small["jacobian"]


def test_scaled_scores_keep_unit_spread_and_soft_weights_at_any_d():
    for d in (4, 1024):
        s = softmax_stats(d, keys=32, rows=200, scaled=True)
        assert 0.85 < s["score_std"] < 1.1 and s["max_weight"] < 0.3 and s["saturated"] == 0



def test_renorm_mask_breaks_where_float32_exp_underflows():
    gap = renorm_breaking_gap()
    assert 100 < gap < 110  # exp(-gap) is below float32's smallest subnormal, 1.4e-45
    assert renorm_breaking_gap(torch.float64) > 700
