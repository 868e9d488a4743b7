"""The benchmark harness's statistics and interleaving, on synthetic timings.

No speed is asserted anywhere: these tests feed made-up times and a fake clock.
"""

import itertools

import numpy as np
import pytest

from cnnzoo import bench
from cnnzoo.bench import harness


@pytest.mark.parametrize("q", [0, 10, 25, 50, 75, 90, 100])
def test_percentile_matches_numpy_linear(q):
    samples = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6]
    assert harness.percentile(samples, q) == pytest.approx(np.percentile(samples, q))


def test_summary_median_quartiles_and_iqr():
    s = harness.summarize([5, 1, 3, 2, 4])
    assert (s.median, s.q1, s.q3, s.n) == (3, 2, 4, 5)
    assert s.iqr == 2
    assert s.as_dict() == {"median": 3, "q1": 2, "q3": 4, "iqr": 2, "n": 5}


def test_paired_ratios_divide_within_each_repeat():
    # The machine slows down 10x in repeat 2: paired ratios do not care.
    baseline = [2.0, 20.0, 2.0]
    candidate = [1.0, 10.0, 1.0]
    assert harness.paired_ratios(baseline, candidate) == [2.0, 2.0, 2.0]
    s = harness.speedup({"a": baseline, "b": candidate}, "a", "b")
    assert (s.median, s.iqr) == (2.0, 0.0)


def test_speedup_normalizes_by_work():
    # The candidate did 4 steps in 2 s; the baseline 1 step in 1 s: 2x faster per step.
    times = {"base": [1.0, 1.0], "cand": [2.0, 2.0]}
    s = harness.speedup(times, "base", "cand", work={"base": 1, "cand": 4})
    assert s.median == pytest.approx(2.0)


@pytest.mark.parametrize("baseline, candidate", [([], []), ([1.0], [1.0, 2.0]),
                                                 ([1.0], [0.0]), ([-1.0], [1.0])])
def test_bad_timing_series(baseline, candidate):
    with pytest.raises(ValueError, match="Received"):
        harness.paired_ratios(baseline, candidate)


@pytest.mark.parametrize("samples", [[], [1.0, float("nan")]])
def test_bad_samples(samples):
    with pytest.raises(ValueError, match="Received"):
        harness.summarize(samples)


def test_interleave_excludes_warmup_and_rotates_the_order():
    calls = []
    ticks = itertools.count()
    # Each callable "takes" a known time on the fake clock.
    cost = {"a": 1, "b": 3, "c": 5}
    clock_value = [0.0]

    def clock():
        next(ticks)
        return clock_value[0]

    def make(name):
        def fn():
            calls.append(name)
            clock_value[0] += cost[name]
        return fn

    times = harness.interleave({n: make(n) for n in cost}, repeats=3, warmup=2, clock=clock)
    # Warm-up rounds run everyone (untimed), then rotated timed rounds.
    assert calls[:6] == ["a", "b", "c"] * 2
    assert calls[6:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert times == {"a": [1, 1, 1], "b": [3, 3, 3], "c": [5, 5, 5]}


@pytest.mark.parametrize("kwargs", [{"repeats": 0}, {"repeats": 2, "warmup": -1},
                                    {"repeats": 1.5}])
def test_interleave_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        harness.interleave({"a": lambda: None}, **kwargs)


def test_rows_and_markdown():
    s = harness.summarize([0.9, 1.0, 1.1])
    ok = harness.row("throughput", "x vs y", summary=s, target=">= 0.98",
                     met=harness.at_least(s, 0.98), context="1 ms")
    missing = harness.unavailable("serving", "no export module")
    assert ok["met"] is True and ok["median"] == 1.0 and ok["n"] == 3
    assert missing["status"] == "unavailable" and missing["note"].startswith("unavailable:")
    results = {"machine": {"date": "d", "cpu": "cpu", "cores": 2, "cpu_units": [],
                           "devices": ["cpu"], "python": "3", "keras": "3", "backend": "b",
                           "defaults": "why"},
               "quick": True, "seconds": 1.0, "rows": [ok, missing]}
    text = bench.to_markdown(results)
    assert "| throughput | x vs y | speedup | 1 | 0.95-1.05 | 3 | >= 0.98 | yes | 1 ms |" in text
    assert "unavailable: no export module" in text
    assert harness.at_most(s, 0.5) is False


def test_fmt_seconds():
    assert harness.fmt_seconds(2.5) == "2.50 s"
    assert harness.fmt_seconds(0.0123) == "12.3 ms"
    assert harness.fmt_seconds(0.000012) == "12 us"


def test_suite_rejects_unknown_names():
    with pytest.raises(ValueError, match="Received: only='serve'"):
        bench.run_suite(only="serve")


def test_command_line_offers_every_benchmark():
    # `cnnzoo bench --only` keeps its own copy of the names (no import for
    # `--help`); a benchmark missing from it could not be run by name.
    from cnnzoo.commands import bench as bench_command

    assert list(bench_command.NAMES) == bench.names()
