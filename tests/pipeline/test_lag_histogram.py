"""The CDC lag histogram: a batch's lags bucketed at once equal them bucketed one by one."""

from __future__ import annotations

import bisect

from hypothesis import given
from hypothesis import strategies as st

from replikit.pipeline.stats import LAG_BUCKETS, LagHistogram

# lags on and around every bucket bound, and anywhere up to past the last
_lag = st.one_of(
    st.sampled_from(LAG_BUCKETS),
    st.floats(0, 5000, allow_nan=False),
    st.sampled_from([0.0, 0.0049, 0.0051, 3600.5]),
)


@given(st.lists(st.lists(_lag, max_size=40), max_size=5))
def test_batches_bucketed_at_once_equal_each_value_bucketed(batches: list[list[float]]) -> None:
    hist = LagHistogram()
    counts = [0] * (len(LAG_BUCKETS) + 1)
    for i, lags in enumerate(batches):
        hist.observe(lags, 1_000_000.0 + i)
        for v in lags:  # a lag counts in the first bucket whose bound is at least it
            counts[bisect.bisect_left(LAG_BUCKETS, v)] += 1
    assert hist.counts == counts
    assert hist.count == sum(len(b) for b in batches)
    assert abs(hist.sum - sum(v for b in batches for v in b)) <= 1e-6 * max(1.0, hist.sum)
    cumulative = hist.cumulative()
    assert cumulative[-1] == ("+Inf", hist.count)
