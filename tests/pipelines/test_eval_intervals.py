"""`restorer eval` says how sure a difference against gray is: paired bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from restorer import metrics


def test_a_constant_difference_has_a_point_interval() -> None:
    r = metrics.paired_bootstrap([3.0, 5.0, 7.5], [1.0, 3.0, 5.5])
    assert (r["mean"], r["low"], r["high"], r["count"]) == (2.0, 2.0, 2.0, 3)


def test_interval_agrees_with_scipys_bootstrap() -> None:
    rng = np.random.default_rng(1)
    gray = rng.normal(13, 3, 40)
    ours = gray - 1.2 + rng.normal(0, 2, 40)  # better by about 1.2, noisily
    r = metrics.paired_bootstrap(list(ours), list(gray), resamples=20000)
    ref = stats.bootstrap(((ours - gray),), np.mean, n_resamples=20000, method="percentile",
                          confidence_level=0.95, random_state=2).confidence_interval
    assert r["mean"] == pytest.approx(float(np.mean(ours - gray)), abs=1e-12)
    assert r["low"] == pytest.approx(ref.low, abs=0.08) and r["high"] == pytest.approx(ref.high, abs=0.08)
    assert r["high"] < 0  # sure of the improvement here


def test_no_difference_gives_an_interval_around_zero() -> None:
    rng = np.random.default_rng(4)
    d = rng.normal(0, 1, 200)
    d -= d.mean()
    r = metrics.paired_bootstrap(list(10 + d), [10.0] * 200)
    assert r["low"] < 0 < r["high"]


def test_pairs_stay_together_and_infinite_values_are_left_out() -> None:
    # unpaired resampling would see the large spread of the values; paired sees a constant difference
    gray = [1.0, 100.0, 50.0, float("inf")]
    ours = [2.0, 101.0, 51.0, 7.0]
    r = metrics.paired_bootstrap(ours, gray)
    assert (r["low"], r["high"], r["count"]) == (1.0, 1.0, 3)


def test_versus_gray_reports_every_paired_metric() -> None:
    rows = [{"ciede2000": 10.0 + i, "psnr": 20.0, "ssim": 0.5, "colourfulness_pred": 5.0} for i in range(4)]
    gray = [{"ciede2000": 12.0 + i, "psnr": 19.0, "ssim": 0.5, "colourfulness_pred": 0.0} for i in range(4)]
    vs = metrics.versus_gray(rows, gray)
    assert vs["ciede2000"]["mean"] == -2.0 and vs["psnr"]["mean"] == 1.0 and vs["colourfulness_pred"]["low"] == 5.0
