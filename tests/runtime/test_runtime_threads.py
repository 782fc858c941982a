"""One Runtime shared by threads gives the same results as sequential calls."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers.signals import SIGNALS

from ast_onnx.runtime import Runtime

THREADS, CALLS = 4, 3


@pytest.fixture(scope="module")
def runtime(small_onnx):
    return Runtime(small_onnx, providers="cpu")


def test_concurrent_classify_equals_sequential(runtime):
    waves = [SIGNALS[n]()[: int(s * 16000)] for n, s in (("speech", 2.2), ("noise", 0.7))]
    waves += [SIGNALS["tone"]()[:12000], SIGNALS["short_0.5s"]()]
    # Each job classifies a different mix: a single input, a list, a long input.
    jobs = [
        waves[i % 4] if i % 3 == 0 else [waves[i % 4], waves[(i + 1) % 4]]
        for i in range(THREADS * CALLS)
    ]
    sequential = [runtime.classify(job) for job in jobs]
    with ThreadPoolExecutor(THREADS) as pool:
        concurrent = list(pool.map(runtime.classify, jobs))

    def flat(results):
        return results if isinstance(results, list) else [results]

    for seq, con in zip(sequential, concurrent, strict=True):
        for a, b in zip(flat(seq), flat(con), strict=True):
            np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
            assert [p.label for p in a.labels] == [p.label for p in b.labels]
            assert [w.start for w in a.windows] == [w.start for w in b.windows]
