"""Mixed bfloat16 against float32: training speed, and the accuracy it keeps.

`simple_cnn` (the raw-image classifier) trains on `digits` once per
precision and seed, the same seed, data order (`cnnzoo.input_pipeline`) and
epochs for both precisions, interleaved; the epochs are timed. Two lines:

- the speed-up of mixed bfloat16 over float32 (per seed, paired);
- the final validation accuracy of bfloat16 minus float32, in points,
  against the target of 0.5 points. One validation example is
  100 / n_val points, and the two runs disagree on some examples: the
  paired (McNemar) standard error `sqrt(b + c) / n_val` of the difference,
  where `b` and `c` count the examples only one of the two gets right, says
  how much of the gap is noise. `tests/test_runtime.py` runs the same check
  with a tolerance of `max(0.5 points, 3 standard errors)`.
"""

import math
import time

import numpy as np

from cnnzoo.bench import harness

NAME = "precision"
QUICK = {"seeds": (0, 1), "epochs": 8}
FULL = {"seeds": (0, 1, 2, 3, 4), "epochs": 15}


def train_once(ds, policy, seed, epochs, batch_size=32):
    """Trains the digits classifier; returns `(val predictions, seconds of training)`."""
    import keras

    from cnnzoo import input_pipeline, pipeline

    keras.utils.set_random_seed(seed)
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = pipeline.build_classifier("simple_cnn", ds.input_shape, ds.num_classes)
    finally:
        keras.config.set_dtype_policy(old)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=False)
    train = input_pipeline.train_data(ds.x_train, ds.y_train, batch_size=batch_size, seed=seed)
    # The first epoch compiles; it is not timed.
    model.fit(**train, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(**train, initial_epoch=1, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    probs = model.predict(ds.x_val, batch_size=256, verbose=0)
    keras.backend.clear_session()
    return np.argmax(probs, axis=-1), seconds


def compare(seeds=(0, 1), epochs=8, validation_split=0.3):
    """Trains float32 and mixed bfloat16 per seed, interleaved.

    Returns:
        A dict: `n_val`, and per seed lists `acc_float32`, `acc_bfloat16`,
        `discordant` (examples only one of the two classifies right),
        `seconds_float32`, `seconds_bfloat16`.
    """
    import cnnzoo.data

    ds = cnnzoo.data.load_dataset("digits", validation_split=validation_split,
                                  test_split=0.0, seed=0)
    out = {"n_val": int(len(ds.y_val)), "acc_float32": [], "acc_bfloat16": [],
           "discordant": [], "seconds_float32": [], "seconds_bfloat16": []}
    for i, seed in enumerate(seeds):
        # Alternate who trains first, as `harness.interleave` does.
        order = ("float32", "mixed_bfloat16") if i % 2 == 0 else ("mixed_bfloat16", "float32")
        right = {}
        for policy in order:
            pred, seconds = train_once(ds, policy, seed, epochs)
            key = "float32" if policy == "float32" else "bfloat16"
            right[key] = pred == ds.y_val
            out[f"acc_{key}"].append(float(right[key].mean()))
            out[f"seconds_{key}"].append(seconds)
        out["discordant"].append(int((right["float32"] != right["bfloat16"]).sum()))
    return out


def gap_and_se(result):
    """Mean accuracy gap (bfloat16 - float32) and its paired standard error, as fractions."""
    n = result["n_val"]
    gaps = [b - f for b, f in zip(result["acc_bfloat16"], result["acc_float32"])]
    # McNemar per seed, then the mean of independent seeds.
    ses = [math.sqrt(d) / n for d in result["discordant"]]
    se = math.sqrt(sum(s * s for s in ses)) / len(ses)
    return sum(gaps) / len(gaps), se


def run(quick=True):
    """Returns the result rows."""
    settings = QUICK if quick else FULL
    result = compare(settings["seeds"], settings["epochs"])
    speed = harness.summarize([f / b for f, b in zip(result["seconds_float32"],
                                                     result["seconds_bfloat16"])])
    gap, se = gap_and_se(result)
    n = result["n_val"]
    rows = [harness.row(
        NAME, "simple_cnn on digits: mixed_bfloat16 vs float32 training", summary=speed,
        context=(f"{settings['epochs'] - 1} timed epochs per run, seeds {list(settings['seeds'])}"
                 f"; float32 {harness.fmt_seconds(np.median(result['seconds_float32']))}, "
                 f"bfloat16 {harness.fmt_seconds(np.median(result['seconds_bfloat16']))}"),
        note="an 8x8-pixel model: too small for bfloat16 units to pay; see throughput")]
    points = harness.Summary(100 * gap, 100 * min(gap - se, gap + se),
                             100 * max(gap - se, gap + se), len(settings["seeds"]))
    rows.append(harness.row(
        NAME, "final val accuracy: bfloat16 - float32 (points)", summary=points,
        metric="points", target="|gap| <= 0.5", met=bool(abs(points.median) <= 0.5),
        context=(f"accuracy float32 {np.mean(result['acc_float32']):.4f}, bfloat16 "
                 f"{np.mean(result['acc_bfloat16']):.4f} on {n} validation images; "
                 f"q1-q3 here = gap -/+ one paired (McNemar) SE = {100 * se:.2f} points"),
        note=(f"one image = {100 / n:.2f} points; a gap within 2 SE "
              f"({200 * se:.2f} points) is noise")))
    return rows
