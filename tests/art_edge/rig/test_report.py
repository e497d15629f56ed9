"""The rig's report: latency percentiles in constant memory."""

import numpy as np

from art_edge.rig.report import LatencyLog


def test_latency_log_holds_constant_memory_and_close_percentiles():
    log = LatencyLog()
    samples = np.random.default_rng(0).lognormal(2.0, 0.7, 50_000)
    for x in samples:
        log.add(float(x))
    assert (
        log.counts.size == len(LatencyLog.EDGES) + 1
    )  # a fixed histogram, whatever the run's length
    for q in (50, 95, 99):
        exact = np.percentile(samples, q)
        assert exact <= log.percentile(q) <= exact * 1.02, q
    assert LatencyLog().percentile(50) is None
