"""Dropout against overfitting: `simple_cnn` on a small subset of digits.

`simple_cnn` (conv-ReLU-pool x2, dense-ReLU-dropout, softmax; cnnzoo's
primitive ReLU and Dropout) is trained on a few hundred digits with head
dropout 0, 0.25 and 0.5. After every epoch the training subset and the
validation set are evaluated with dropout off, so the training numbers are
those of the deployed model (Keras's running `fit` accuracy is measured with
dropout on, which flatters dropout's gap).

With `augment` (a `cnnzoo.recipe.augment` policy, without flips: a mirrored
digit is another digit or none), every rate is trained again with that
augmentation in front of the model, so that the report compares the
generalisation gap with dropout, with augmentation and with both.
"""

import time

import numpy as np

from cnnzoo.experiments import _common

NAME = "overfitting"


def add_arguments(parser):
    parser.add_argument("--rates", default="0,0.25,0.5",
                        help="Comma-separated dropout rates. Default: 0,0.25,0.5.")
    parser.add_argument("--train-samples", type=int, default=200,
                        help="Training subset size. Default: 200.")
    parser.add_argument("--epochs", type=int, default=30, help="Default: 30.")
    parser.add_argument("--batch-size", type=int, default=32, help="Default: 32.")
    parser.add_argument("--seeds", type=int, default=2,
                        help="Repeat each rate with this many seeds and average. Default: 2.")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam. Default: 1e-3.")
    parser.add_argument("--augment", default="none",
                        help="Also train every rate with this augmentation policy (light, "
                             "default, strong; no flips), to compare the gap with dropout, "
                             "with augmentation and with both. Default: none.")


def parse_rates(rates):
    from cnnzoo import _validation as v

    return v.check_list("rates", rates, v.check_rate, what="dropout rates")


def _train_one(ds, x_train, y_train, rate, epochs, batch_size, learning_rate, seed,
               augment="none"):
    import keras

    import cnnzoo

    keras.utils.set_random_seed(seed)
    model = cnnzoo.create_model("simple_cnn", input_shape=ds.input_shape,
                                num_classes=ds.num_classes, dropout_rate=rate,
                                implementation="primitive")
    if augment != "none":
        from cnnzoo.recipe.augment import augmentation

        # In training only (`fit`); `evaluate` below calls with training=False.
        inputs = keras.Input(ds.input_shape)
        layer = augmentation(augment, input_shape=ds.input_shape, seed=seed, flip="none",
                             value_range=(0.0, 1.0))  # `_common.load`'s pixels
        model = keras.Model(inputs, model(layer(inputs)))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    curves = {k: [] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy",
                              "fit_loss", "fit_accuracy")}

    def evaluate(x, y):
        # One forward pass with dropout off (cheaper than `evaluate` per epoch).
        probs = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)), "float64")
        picked = np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)
        return float(-np.mean(np.log(picked))), float(np.mean(probs.argmax(axis=1) == y))

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            curves["fit_loss"].append(float(logs["loss"]))
            curves["fit_accuracy"].append(float(logs["accuracy"]))
            for split, (x, y) in (("train", (x_train, y_train)), ("val", (ds.x_val, ds.y_val))):
                loss, acc = evaluate(x, y)
                curves[f"{split}_loss"].append(loss)
                curves[f"{split}_accuracy"].append(acc)

    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0,
              callbacks=[Record()])
    _, test_acc = evaluate(ds.x_test, ds.y_test)
    keras.backend.clear_session()
    return curves, float(test_acc)


def run(out, *, rates=(0.0, 0.25, 0.5), train_samples=200, epochs=30, batch_size=32, seeds=2,
        learning_rate=1e-3, seed=0, augment="none", log=print):
    """Trains `simple_cnn` with each dropout rate; writes curves and the gap.

    Args:
        out: the output folder.
        rates: head dropout rates.
        train_samples: size of the (stratified) training subset of digits.
        epochs: epochs per run.
        batch_size: batch size.
        seeds: runs per rate (seeds `seed`, `seed + 1`, ...), averaged.
        learning_rate: Adam's learning rate.
        seed: the first seed; also picks the subset.
        augment: a `cnnzoo.recipe.augment` policy (flips off) to train
            every rate with as well; `"none"` (the default): dropout only.
    """
    from cnnzoo import _validation as v
    from cnnzoo import data as data_module

    out = _common.check_out(out)
    rates = parse_rates(rates)
    train_samples = v.check_int("train_samples", train_samples, low=10)
    epochs = v.check_int("epochs", epochs, low=1)
    batch_size = v.check_int("batch_size", batch_size, low=1)
    seeds = v.check_int("seeds", seeds, low=1)
    learning_rate = v.check_number("learning_rate", learning_rate, low=0.0,
                                   low_inclusive=False)
    seed = v.check_int("seed", seed)
    from cnnzoo.recipe import AUGMENTATIONS

    v.check_choice("augment", augment, [a for a in AUGMENTATIONS if a != "randaugment"])

    ds = _common.load("digits", seed=seed)
    rng = np.random.default_rng(seed)
    # Stratified: each digit gives its share (a plain random draw of 30 can miss one).
    _, subset = data_module._stratified_split(
        ds.y_train, min(train_samples, len(ds.x_train)), rng, keep_one=False)
    subset = np.sort(subset)
    x_train, y_train = ds.x_train[subset], ds.y_train[subset]

    results = []
    # Every rate without augmentation, then (with `augment`) every rate with it.
    policies = ["none"] + ([augment] if augment != "none" else [])
    conditions = [(rate, policy) for policy in policies for rate in rates]
    for rate, policy in conditions:
        runs = []
        for s in range(seeds):
            start = time.perf_counter()
            curves, test_acc = _train_one(ds, x_train, y_train, rate, epochs, batch_size,
                                          learning_rate, seed + s, augment=policy)
            runs.append({"seed": seed + s, "curves": curves, "test_accuracy": test_acc,
                         "seconds": round(time.perf_counter() - start, 2)})
            if log:
                log(f"{_label(rate, policy)} seed {seed + s}: train acc "
                    f"{curves['train_accuracy'][-1]:.3f}, val acc "
                    f"{curves['val_accuracy'][-1]:.3f}, val loss {curves['val_loss'][-1]:.3f}")
        mean = {k: np.mean([r["curves"][k] for r in runs], axis=0).tolist()
                for k in runs[0]["curves"]}
        final = {k: float(val[-1]) for k, val in mean.items()}
        best_val_loss = float(np.min(mean["val_loss"]))
        results.append({
            "rate": rate,
            "augment": policy,
            "runs": runs,
            "mean_curves": mean,
            "final": final,
            "accuracy_gap": final["train_accuracy"] - final["val_accuracy"],
            "loss_gap": final["val_loss"] - final["train_loss"],
            "best_val_loss": best_val_loss,
            "best_val_loss_epoch": int(np.argmin(mean["val_loss"])) + 1,
            "test_accuracy": float(np.mean([r["test_accuracy"] for r in runs])),
            "gap_spread": float(np.ptp([r["curves"]["train_accuracy"][-1]
                                        - r["curves"]["val_accuracy"][-1] for r in runs])),
        })

    figures = _plots(results, epochs)
    markdown = _markdown(results, len(x_train), epochs, batch_size, seeds, learning_rate, seed,
                         len(ds.x_val))
    data = {"experiment": NAME, "dataset": "digits", "train_samples": int(len(x_train)),
            "train_class_counts": np.bincount(y_train, minlength=ds.num_classes).tolist(),
            "val_samples": int(len(ds.x_val)), "epochs": epochs, "batch_size": batch_size,
            "seeds": seeds, "learning_rate": learning_rate, "seed": seed, "augment": augment,
            "results": results}
    files = _common.save(out, NAME, markdown, data, figures, log=log)
    return {**data, "files": files}


def _label(rate, policy):
    """`"dropout 0.5"`, `"dropout 0.5 + default augmentation"`."""
    return f"dropout {rate:g}" + (f" + {policy} augmentation" if policy != "none" else "")


def _plots(results, epochs):
    fig, axes = _common.figure(ncols=2)
    epochs_axis = np.arange(1, epochs + 1)
    for i, r in enumerate(results):
        color = f"C{i}"
        m = r["mean_curves"]
        label = _label(r["rate"], r["augment"])
        axes[0, 0].plot(epochs_axis, m["train_accuracy"], "-", color=color,
                        label=f"{label} train")
        axes[0, 0].plot(epochs_axis, m["val_accuracy"], "--", color=color,
                        label=f"{label} val")
        axes[0, 1].plot(epochs_axis, m["train_loss"], "-", color=color)
        axes[0, 1].plot(epochs_axis, m["val_loss"], "--", color=color)
    axes[0, 0].set_title("accuracy (solid: train, dashed: validation)")
    axes[0, 1].set_title("loss (solid: train, dashed: validation)")
    axes[0, 1].set_yscale("log")
    for ax in axes[0]:
        ax.set_xlabel("epoch")
    axes[0, 0].legend(fontsize=7)
    return {"curves": fig}


def _markdown(results, n_train, epochs, batch_size, seeds, learning_rate, seed, n_val):
    rows = [(f"{r['rate']:g}", r["augment"], f"{r['final']['train_accuracy']:.3f}",
             f"{r['final']['val_accuracy']:.3f}", f"{r['accuracy_gap']:.3f}",
             f"{r['final']['train_loss']:.3f}", f"{r['final']['val_loss']:.3f}",
             f"{r['loss_gap']:.3f}", f"{r['best_val_loss']:.3f} (epoch {r['best_val_loss_epoch']})",
             f"{r['test_accuracy']:.3f}")
            for r in results]
    table = _common.md_table(["dropout", "augmentation", "train acc", "val acc", "acc gap",
                              "train loss",
                              "val loss", "loss gap", "best val loss", "test acc"], rows)
    base = results[0]
    findings = []
    for r in results[1:]:
        smaller = r["accuracy_gap"] < base["accuracy_gap"]
        findings.append(
            f"{_label(r['rate'], r['augment']).capitalize()} vs {_label(base['rate'], 'none')}: "
            f"accuracy gap {r['accuracy_gap']:.3f} vs "
            f"{base['accuracy_gap']:.3f} ({'smaller' if smaller else 'NOT smaller'}), loss gap "
            f"{r['loss_gap']:.3f} vs {base['loss_gap']:.3f}, validation accuracy "
            f"{r['final']['val_accuracy']:.3f} vs {base['final']['val_accuracy']:.3f}.")
    still_falling = [_label(r["rate"], r["augment"]) for r in results
                     if r["best_val_loss_epoch"] >= epochs - 1]
    if still_falling:
        findings.append("Validation loss was still at its lowest in the last epochs for "
                        + ", ".join(still_falling)
                        + ": those runs had not finished learning, and dropout and augmentation "
                          "slow training (higher train loss at the end), so the comparison "
                          "favours neither; run longer (`--epochs`) to see where the gaps "
                          "settle.")
    if seeds > 1:
        spread = max(r["gap_spread"] for r in results)
        findings.append(f"Between seeds the final accuracy gap varies by up to {spread:.3f}; "
                        "differences smaller than that are noise.")
    else:
        findings.append("One seed per rate: nothing here measures the noise between runs; "
                        "run more (`--seeds`) before reading differences as effects.")
    what = (", dropout and augmentation" if any(r["augment"] != "none" for r in results)
            else " and dropout")
    return f"""# Overfitting{what}: simple_cnn on {n_train} digits

`simple_cnn` (cnnzoo's primitive ReLU and Dropout; dropout in the head, after the dense
layer's ReLU) trained on a stratified subset of {n_train} digits (8x8) for {epochs} epochs
(Adam, learning rate {learning_rate:g}, batch {batch_size}), validated on {n_val} held-out
digits; {seeds} seed(s) from {seed}, averaged. Train and validation numbers are evaluated
with dropout (and augmentation) off after each epoch.

Final epoch (the gap is train minus validation accuracy, and validation minus train loss):

{table}

What comes out:

""" + "\n".join(f"- {f}" for f in findings) + """

Curves: `overfitting_curves.png`; every epoch of every run (and Keras's running `fit`
numbers, measured with dropout on) in `overfitting.json`.
"""
