"""A head-dropout search over pretrained backbones, against the plain Keras Tuner way.

The data: an image folder of 3 classes drawn from `shapes`, in RGB, at
160x160 (600 images in the full budget), written once per run. The
weights: keras.applications' own architecture with random weights, saved
by Keras in the publisher's `.h5` layout (the timing does not depend on the
values; no download). Per backbone (`mobilenet_v2`, `resnet50`), side by
side in one process, the same splits, trials and epochs:

- `plain Keras Tuner`: `keras_tuner.RandomSearch` over a `build(hp)` that
  puts the keras.applications backbone (`include_top=False`, the weights
  file, `trainable=False`, called with `training=False`) under its own
  `preprocess_input`, `GlobalAveragePooling2D`, `Dropout(hp)` (0-0.5, step
  0.1) and a `Dense` softmax; Keras defaults (float32, batch size 32,
  arrays straight into `fit`): every trial runs the backbone in every step;
- `cnnzoo`: `tuning.search(model, folder, weights=FILE)` with its defaults
  (the frozen backbone's features computed once, `tuning.features`; the
  head's dropout searched over the same range), without the export.

Rows: trials per hour (the whole search's wall time, set-up included) with
the best validation accuracies, and, for the fine-tuning phase, the epoch
time of the whole model unfrozen (batch norm frozen): cnnzoo's model of
`train(..., fine_tune_epochs=N, unfreeze="all")` against the keras.applications
model with `trainable=True` under `training=False`, both float32, and the
default precision's speed-up over float32.
"""

import contextlib
import io
import os
import shutil
import tempfile
import time

import numpy as np

from cnnzoo.bench import harness

NAME = "transfer"
QUICK = {"images": 150, "size": 96, "max_trials": 3, "epochs": 2, "models": ("mobilenet_v2",),
         "repeats": 1}
FULL = {"images": 600, "size": 160, "max_trials": 8, "epochs": 5,
        "models": ("mobilenet_v2", "resnet50"), "repeats": 1}
# keras.applications' class and preprocessing module per zoo model.
APPLICATIONS = {"mobilenet_v2": ("MobileNetV2", "mobilenet_v2"),
                "resnet50": ("ResNet50", "resnet")}


def make_folder(path, images, size, seed=0):
    """An image folder of `images` RGB PNGs of 3 shape classes at `size` px."""
    from PIL import Image

    import cnnzoo.data

    ds = cnnzoo.data.load_dataset("shapes", image_size=size, num_samples=images, seed=seed,
                                  validation_split=0.0, test_split=0.0)
    for i, (x, y) in enumerate(zip(ds.x_train, ds.y_train)):
        folder = os.path.join(path, ds.class_names[int(y)])
        os.makedirs(folder, exist_ok=True)
        pixels = np.repeat(np.asarray(x, "uint8"), 3, axis=-1) if x.shape[-1] == 1 else x
        Image.fromarray(np.asarray(pixels, "uint8")).save(os.path.join(folder, f"{i:04d}.png"))
    return path


def weights_file(model_name, size, path):
    """keras.applications' backbone with random weights, saved in its publisher's layout."""
    import keras

    cls, _ = APPLICATIONS[model_name]
    base = getattr(keras.applications, cls)(weights=None, include_top=False,
                                             input_shape=(size, size, 3))
    base.save(path)
    keras.backend.clear_session()
    return path


def plain_build(model_name, size, num_classes, weights):
    """The plain user's `build(hp)`: the frozen keras.applications backbone under a new head."""
    import keras
    from keras import layers

    cls, module = APPLICATIONS[model_name]
    prep = getattr(keras.applications, module).preprocess_input

    def build(hp):
        base = getattr(keras.applications, cls)(weights=weights, include_top=False,
                                                 input_shape=(size, size, 3))
        base.trainable = False
        inputs = keras.Input(shape=(size, size, 3))
        x = base(prep(inputs), training=False)
        x = layers.GlobalAveragePooling2D()(x)
        x = layers.Dropout(hp.Float("dropout_rate", 0.0, 0.5, step=0.1))(x)
        outputs = layers.Dense(num_classes, activation="softmax")(x)
        model = keras.Model(inputs, outputs)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model

    return build


def _search_plain(model_name, ds, size, weights, max_trials, epochs, out, seed):
    import keras
    import keras_tuner as kt

    keras.config.set_dtype_policy("float32")
    tuner = kt.RandomSearch(plain_build(model_name, size, ds.num_classes, weights),
                            objective="val_accuracy", max_trials=max_trials, seed=seed + 1,
                            directory=out, overwrite=True)
    with contextlib.redirect_stdout(io.StringIO()):
        tuner.search(ds.x_train, ds.y_train, validation_data=(ds.x_val, ds.y_val),
                     epochs=epochs, verbose=0)
    keras.backend.clear_session()
    return float(tuner.oracle.get_best_trials(1)[0].score)


def _search_zoo(model_name, folder, size, weights, max_trials, epochs, out, seed):
    import keras

    import tuning

    result = tuning.search(model_name, folder, weights=weights, input_size=size,
                           max_trials=max_trials, epochs=epochs, seed=seed, out=out,
                           export=False, quiet=True)
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session()
    return float(result.best["score"])


def _epoch_seconds(model, ds, epochs=2, batch_size=32):
    """Seconds per epoch after a first, untimed one (tracing)."""
    from cnnzoo import input_pipeline

    train = input_pipeline.train_data(ds.x_train, ds.y_train, batch_size=batch_size, seed=0)
    model.fit(**train, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(**train, initial_epoch=1, epochs=1 + epochs, verbose=0)
    return (time.perf_counter() - start) / epochs


def fine_tune_epoch(model_name, ds, size, weights, policy, *, plain):
    """One epoch's seconds of the whole model unfrozen (batch norm frozen), in `policy`."""
    import keras

    from cnnzoo import runtime, transfer
    from cnnzoo import train as T

    with runtime.dtype_policy(policy):
        if plain:
            cls, module = APPLICATIONS[model_name]
            base = getattr(keras.applications, cls)(weights=weights, include_top=False,
                                                     input_shape=(size, size, 3))
            inputs = keras.Input(shape=(size, size, 3))
            x = base(getattr(keras.applications, module).preprocess_input(inputs),
                     training=False)
            x = keras.layers.GlobalAveragePooling2D()(x)
            x = keras.layers.Dropout(0.2)(x)
            model = keras.Model(inputs, keras.layers.Dense(ds.num_classes, activation="softmax",
                                                           dtype="float32")(x))
            model.compile(optimizer=keras.optimizers.Adam(1e-4),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        else:
            model = T.build_model(model_name, ds, input_size=size, weights=weights,
                                  tunable_dropout=True, block_dropout_rate=0.0, dropout_rate=0.2)
            transfer.set_phase(model, model_name, 2, transfer.Plan(1, "all", 1e-4, 0.0))
            T.compile_model(model, learning_rate=1e-4)
        seconds = _epoch_seconds(model, ds)
    keras.backend.clear_session()
    return seconds


def run(quick=True, images=None, size=None, max_trials=None, epochs=None, models=None,
        repeats=None, target=10.0, where="2 CPU cores", fine_tune=True):
    """Returns the result rows (see the module's docstring); arguments override the budget."""
    try:
        import keras_tuner  # noqa: F401

        import tuning.driver  # noqa: F401
    except ImportError as error:
        return [harness.unavailable(NAME, f"keras-tuner or tuning does not import ({error})")]
    import cnnzoo.data
    from cnnzoo import runtime

    budget = dict(QUICK if quick else FULL)
    for key, value in (("images", images), ("size", size), ("max_trials", max_trials),
                       ("epochs", epochs), ("models", models), ("repeats", repeats)):
        if value is not None:
            budget[key] = value
    size, trials = budget["size"], budget["max_trials"]
    workdir = tempfile.mkdtemp(prefix="cnnzoo-bench-transfer-")
    rows = []
    try:
        folder = make_folder(os.path.join(workdir, "images"), budget["images"], size)
        ds = cnnzoo.data.load_dataset(folder, seed=0)
        n_val = len(ds.x_val)
        for model_name in budget["models"]:
            weights = weights_file(model_name, size, os.path.join(workdir, f"{model_name}.h5"))
            best = {}
            count = [0]

            def folder_for(kind):
                count[0] += 1
                return os.path.join(workdir, f"{model_name}-{kind}-{count[0]}")

            def plain(model_name=model_name, weights=weights, best=best):
                best.setdefault("plain", []).append(_search_plain(
                    model_name, ds, size, weights, trials, budget["epochs"],
                    folder_for("plain"), seed=0))

            def zoo(model_name=model_name, weights=weights, best=best):
                best.setdefault("cnnzoo", []).append(_search_zoo(
                    model_name, folder, size, weights, trials, budget["epochs"],
                    folder_for("zoo"), seed=0))

            times = harness.interleave({"plain": plain, "cnnzoo": zoo},
                                       repeats=budget["repeats"], warmup=0)
            ratio = harness.speedup(times, "plain", "cnnzoo")
            base = harness.summarize(best["plain"]).median
            ours = harness.summarize(best["cnnzoo"]).median
            from cnnzoo.bench.search import best_reached

            reached, note = best_reached(ours, base, n_val)
            per_hour = {k: 3600 * trials / harness.summarize(t).median for k, t in times.items()}
            rows.append(harness.row(
                NAME, f"trials/hour: {model_name} head-dropout search vs plain Keras Tuner",
                summary=ratio, target=f">= {target:g} ({where}), best objective within noise",
                met=harness.at_least(ratio, target) and reached,
                context=(f"{trials} trials x {budget['epochs']} epochs, {len(ds.x_train)} train "
                         f"/ {n_val} validation images of {size}x{size}x3, 3 classes; "
                         f"trials/hour: plain {per_hour['plain']:.0f}, cnnzoo "
                         f"{per_hour['cnnzoo']:.0f}"),
                note=f"best val_accuracy: {note}"))
            if not fine_tune:
                continue
            default = runtime.resolve(model=model_name)["precision"]
            fns = {
                "plain float32": lambda m=model_name, w=weights: fine_tune_epoch(
                    m, ds, size, w, "float32", plain=True),
                "cnnzoo float32": lambda m=model_name, w=weights: fine_tune_epoch(
                    m, ds, size, w, "float32", plain=False),
            }
            if default != "float32":
                fns[f"cnnzoo {default}"] = lambda m=model_name, w=weights, p=default: \
                    fine_tune_epoch(m, ds, size, w, p, plain=False)
            # Timed by the epochs' own clock: building and tracing are not an epoch's cost.
            elapsed = [0.0]

            def measured(fn):
                def call():
                    elapsed[0] += fn()
                return call

            # Two repeats at least for a spread, unless the caller asked for fewer.
            fine_repeats = repeats if repeats is not None else max(2, budget["repeats"])
            epoch_times = harness.interleave({k: measured(fn) for k, fn in fns.items()},
                                             repeats=fine_repeats, warmup=0,
                                             clock=lambda: elapsed[0])
            ratio = harness.speedup(epoch_times, "plain float32", "cnnzoo float32")
            context = (f"seconds per epoch of {len(ds.x_train)} images: plain "
                       f"{harness.summarize(epoch_times['plain float32']).median:.2f}, cnnzoo "
                       f"{harness.summarize(epoch_times['cnnzoo float32']).median:.2f}")
            note = f"default precision on this machine: {default}"
            if default != "float32":
                fast = harness.speedup(epoch_times, "cnnzoo float32", f"cnnzoo {default}")
                note += f", {fast.median:.2f}x float32's speed"
            rows.append(harness.row(
                NAME, f"fine-tuning epoch: {model_name} unfrozen, cnnzoo vs plain (float32)",
                summary=ratio, target=">= 0.98", met=harness.at_least(ratio, 0.98),
                context=context, note=note))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows
