"""The benchmarks' percentile is numpy's default (linear between the closest ranks)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit.bench.system import percentile

values = st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=60)


@settings(max_examples=200)
@given(values, st.integers(min_value=0, max_value=100))
def test_percentile_is_numpys_linear_percentile(data, q):
    assert percentile(data, q) == pytest.approx(float(np.percentile(data, q)), rel=1e-9, abs=1e-9)


def test_percentile_interpolates_between_ranks_and_says_nan_for_nothing():
    assert percentile([10.0, 20.0], 50) == 15.0  # not a nearest rank: halfway
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 99) == pytest.approx(4.96)
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


@pytest.mark.parametrize("q", [-1, 101, 99.9, True])
def test_a_percentile_outside_0_to_100_is_refused(q):
    with pytest.raises(ValueError, match="whole percentile from 0 to 100"):
        percentile([1.0, 2.0], q)
