"""`cnnzoo.bench.breakdown`: exclusive times per part, on a fake clock."""

import pytest

from cnnzoo.bench import breakdown


@pytest.fixture
def clock(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(breakdown.time, "perf_counter", lambda: now[0])
    return now


def test_nested_calls_charge_their_own_time_to_their_part(clock):
    line = breakdown.Timeline()

    def inner():
        clock[0] += 2.0

    def outer():
        clock[0] += 1.0
        timed_inner()
        timed_inner()
        clock[0] += 0.5

    timed_inner = line.wrap("building models", inner)
    line.wrap("Keras Tuner's bookkeeping (oracle, trial and tuner state)", outer)()
    assert line.seconds["building models"] == 4.0
    assert line.seconds["Keras Tuner's bookkeeping (oracle, trial and tuner state)"] == 1.5
    assert line.counts["building models"] == 2
    parts = line.breakdown(total=6.0)
    assert parts["other (set-up, report, Python between calls)"] == 0.5


def test_a_compiled_function_s_first_call_less_a_typical_call_is_its_tracing(clock):
    line = breakdown.Timeline()
    seconds = iter([7.0, 1.0, 1.2, 0.8])

    def step():
        clock[0] += next(seconds)

    timed = line.wrap_compiled("training", step)
    for _ in range(4):
        timed()
    parts = line.breakdown(total=10.0)
    assert parts["tracing the training step"] == pytest.approx(6.0)  # 7 - median(1, 1.2, 0.8)
    assert parts["training steps"] == pytest.approx(4.0)
    assert line.counts["training steps"] == 4
    assert line.counts["tracing the training step"] == 1


def test_timed_parts_puts_every_function_back():
    import keras
    import keras_tuner as kt

    from tuning import reuse

    before = (keras.Model.fit, kt.Oracle.create_trial, reuse.reset_from,
              keras.Model.make_train_function)
    with breakdown.timed_parts() as line:
        assert keras.Model.fit is not before[0]
        assert isinstance(line, breakdown.Timeline)
    assert (keras.Model.fit, kt.Oracle.create_trial, reuse.reset_from,
            keras.Model.make_train_function) == before
    assert "fit" not in vars(keras.Model)  # inherited again, not copied onto the class
