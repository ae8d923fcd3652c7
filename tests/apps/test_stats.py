"""Statistics on known inputs."""
import math

import pytest

from vggedge.apps.bench.stats import coefficient_of_variation, percentile, summarize, throughput


def test_percentiles_on_one_to_hundred():
    values = list(range(1, 101))
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 90) == pytest.approx(90.1)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1 and percentile(values, 100) == 100


def test_percentile_interpolates_between_two_samples():
    assert percentile([10.0, 20.0], 25) == pytest.approx(12.5)


def test_cv_known_values():
    assert coefficient_of_variation([2, 4, 4, 4, 5, 5, 7, 9]) == pytest.approx(math.sqrt(32 / 7) / 5)
    assert coefficient_of_variation([3.0]) == 0.0
    assert coefficient_of_variation([1.0, 1.0, 1.0]) == 0.0


def test_summarize_fields_and_values():
    s = summarize([0.010, 0.012, 0.011, 0.030, 0.010])
    assert set(s) == {"count", "min", "mean", "median", "p90", "p95", "p99", "max", "std", "cv"}
    assert s["min"] == 0.010 and s["max"] == 0.030 and s["median"] == 0.011 and s["count"] == 5
    assert s["mean"] == pytest.approx(0.0146)
    assert s["p90"] == pytest.approx(0.0228)


def test_throughput_uses_median():
    assert throughput(8, [0.1, 0.2, 0.2, 10.0]) == pytest.approx(40.0)


def test_empty_samples_rejected():
    with pytest.raises(ValueError):
        summarize([])
