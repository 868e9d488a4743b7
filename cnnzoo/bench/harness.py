"""Timing and statistics shared by every benchmark.

Every comparison is a ratio measured side by side in one process:
`interleave` runs the contenders in turn, repeat after repeat (rotating who
goes first, so that neither always runs on a warmer or cooler machine),
after warm-up runs that are not timed. `paired_ratios` then divides the
baseline's time by the candidate's time *within each repeat*, so that a
slow moment of the shared machine hits both sides of a ratio, and
`summarize` reports the median and the interquartile range of those ratios.
Absolute times are context only.

Nothing here imports Keras: the statistics are tested on synthetic timings.
"""

import dataclasses
import math
import statistics
import time

from cnnzoo import _validation as v


def percentile(samples, q):
    """The `q`-th percentile (0-100) of `samples`, linearly interpolated.

    The same definition as `numpy.percentile(..., method="linear")`.
    """
    data = sorted(float(s) for s in samples)
    if not data:
        v.fail("Expected at least one sample.", "samples", samples)
    q = v.check_number("q", q, low=0.0, high=100.0)
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


@dataclasses.dataclass(frozen=True)
class Summary:
    """Median and spread of a set of samples.

    Attributes:
        median: the median.
        q1: the 25th percentile.
        q3: the 75th percentile.
        n: the number of samples.
    """

    median: float
    q1: float
    q3: float
    n: int

    @property
    def iqr(self):
        """The interquartile range `q3 - q1`."""
        return self.q3 - self.q1

    def as_dict(self):
        return {"median": self.median, "q1": self.q1, "q3": self.q3, "iqr": self.iqr,
                "n": self.n}


def summarize(samples):
    """Returns the `Summary` (median, quartiles, count) of `samples`."""
    samples = [float(s) for s in samples]
    if not samples:
        v.fail("Expected at least one sample.", "samples", samples)
    for s in samples:
        if math.isnan(s):
            v.fail("Expected samples without NaN.", "samples", samples)
    return Summary(statistics.median(samples), percentile(samples, 25),
                   percentile(samples, 75), len(samples))


def paired_ratios(baseline, candidate, baseline_work=1.0, candidate_work=1.0):
    """Per-repeat speed-ups of `candidate` over `baseline`.

    Both series must come from the same interleaved repeats. Each timing is
    first divided by the work it did (`*_work`, e.g. training steps), so
    contenders of very different speed can do different amounts of work per
    repeat: the ratio is `(baseline[i] / baseline_work) / (candidate[i] /
    candidate_work)`. A ratio above 1 means the candidate is faster.
    """
    if len(baseline) != len(candidate) or not baseline:
        v.fail("Expected two non-empty timing series of the same length (one time per "
               "interleaved repeat).", "lengths", (len(baseline), len(candidate)))
    for t in list(baseline) + list(candidate):
        if not t > 0:
            v.fail("Expected positive times.", "time", t)
    for w in (baseline_work, candidate_work):
        v.check_number("work", w, low=0.0, low_inclusive=False)
    return [(b / baseline_work) / (c / candidate_work) for b, c in zip(baseline, candidate)]


def speedup(timings, baseline, candidate, work=None):
    """`Summary` of the paired speed-ups of `candidate` over `baseline`.

    Args:
        timings: the dict `interleave` returned.
        baseline, candidate: two of its keys.
        work: optional dict `key -> units of work per timed call`
            (default 1 each).
    """
    work = work or {}
    return summarize(paired_ratios(timings[baseline], timings[candidate],
                                   work.get(baseline, 1.0), work.get(candidate, 1.0)))


def interleave(fns, *, repeats, warmup=1, clock=time.perf_counter):
    """Times several callables side by side, in interleaved repeats.

    Args:
        fns: dict `name -> callable`; each call does one unit of work.
        repeats: number of timed rounds; each round times every callable once.
        warmup: untimed rounds first (compilation, caches, allocator).
        clock: the clock (injectable for tests).

    Returns:
        A dict `name -> list of seconds`, one entry per repeat, in the
        order of `fns`.
    """
    repeats = v.check_int("repeats", repeats, low=1)
    warmup = v.check_int("warmup", warmup, low=0)
    if not fns:
        v.fail("Expected at least one callable to time.", "fns", fns)
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times = {name: [] for name in names}
    for r in range(repeats):
        # Rotate who goes first so no contender always follows the same one.
        k = r % len(names)
        for name in names[k:] + names[:k]:
            start = clock()
            fns[name]()
            times[name].append(clock() - start)
    return times


def row(benchmark, name, *, summary=None, metric="speedup", target=None, met=None,
        context="", note="", status="ok"):
    """One line of the results table, as a JSON-ready dict.

    Args:
        benchmark: the benchmark's name (`"throughput"`, ...).
        name: what this line compares.
        summary: the `Summary` of the measured quantity (`None` for a
            line that could not be measured).
        metric: what the numbers are, e.g. `"speedup"` (baseline time /
            candidate time, > 1 is faster), `"fraction"`, `"seconds"`.
        target: the target in words, e.g. `">= 0.98"`.
        met: whether the median meets the target (`None`: no target).
        context: absolute numbers, for reading the ratio.
        note: anything a reader needs to interpret the line.
        status: `"ok"`, `"unavailable"` or `"error"`.
    """
    out = {"benchmark": benchmark, "name": name, "metric": metric, "status": status,
           "target": target, "met": met, "context": context, "note": note}
    out.update(summary.as_dict() if summary is not None else
               {"median": None, "q1": None, "q3": None, "iqr": None, "n": 0})
    return out


def unavailable(benchmark, reason, name=None):
    """A line saying that a benchmark could not run, and why."""
    return row(benchmark, name or benchmark, status="unavailable", note=f"unavailable: {reason}")


def at_least(summary, threshold):
    """Whether the median meets `>= threshold`."""
    return bool(summary.median >= threshold)


def at_most(summary, threshold):
    """Whether the median meets `<= threshold`."""
    return bool(summary.median <= threshold)


def fmt_seconds(seconds):
    """`0.0123` -> `"12.3 ms"`: a readable duration."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} us"
