"""SavedModel `serve` latency against `predict_on_batch`, at batch 1 and 256.

The raw-image `simple_cnn` classifier (`cnnzoo.pipeline.build_classifier`,
28x28x1) is exported with `cnnzoo.export.export_saved_model` and reloaded
with `tf.saved_model.load`; its serving endpoint (the function TensorFlow
Serving runs) is timed interleaved with the in-memory Keras model's
`predict_on_batch` on the same images. Target: serving no slower at batch 1
(speedup >= 1).
"""

import shutil
import tempfile

import numpy as np

from cnnzoo.bench import common, harness

NAME = "serving"
SHAPE = (28, 28, 1)
# batch size -> calls per timed sample (quick, full)
CALLS = {1: (50, 200), 256: (4, 10)}


def run(quick=True, repeats=None):
    """Returns the result rows."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return [harness.unavailable(NAME, "a SavedModel needs the TensorFlow backend")]
    try:
        from cnnzoo import export
    except ImportError as error:
        return [harness.unavailable(NAME, f"cnnzoo.export does not import ({error})")]
    import tensorflow as tf

    from cnnzoo import pipeline

    repeats = repeats or (7 if quick else 15)
    model = pipeline.build_classifier("simple_cnn", SHAPE, 10)
    folder = tempfile.mkdtemp(prefix="cnnzoo-bench-serving-")
    rows = []
    try:
        path = f"{folder}/model"
        export.export_saved_model(model, path, verbose=False)
        loaded = tf.saved_model.load(path)
        serve = getattr(loaded, export.SIGNATURE, None) or loaded.signatures[export.SIGNATURE]
        for batch_size, (quick_calls, full_calls) in CALLS.items():
            calls = quick_calls if quick else full_calls
            x = np.random.default_rng(0).uniform(0, 255, (batch_size,) + SHAPE)
            x = x.astype("float32")
            x_tf = tf.constant(x)

            def predict(x=x, calls=calls):
                for _ in range(calls):
                    out = model.predict_on_batch(x)
                return out

            def serving(x_tf=x_tf, calls=calls):
                for _ in range(calls):
                    out = serve(x_tf)
                common.block(out[export.OUTPUT_NAME] if isinstance(out, dict) else out)

            times = harness.interleave({"predict_on_batch": predict, "serve": serving},
                                       repeats=repeats, warmup=1)
            ratio = harness.speedup(times, "predict_on_batch", "serve")
            per_call = {k: harness.fmt_seconds(harness.summarize(t).median / calls)
                        for k, t in times.items()}
            target = ">= 1 (no slower)" if batch_size == 1 else None
            rows.append(harness.row(
                NAME, f"batch {batch_size}: SavedModel serve vs predict_on_batch",
                summary=ratio, target=target,
                met=harness.at_least(ratio, 1.0) if target else None,
                context=(f"simple_cnn classifier 28x28x1; per call: predict_on_batch "
                         f"{per_call['predict_on_batch']}, serve {per_call['serve']}")))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows
