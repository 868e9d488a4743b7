"""Per-layer gradient norms in plain deep CNNs: sigmoid, tanh and ReLU.

A plain CNN here is `depth` 3x3 convolutions (8 filters, 'same' padding), each
followed by the activation, then a flatten and a softmax layer:
no batch normalization, no residual connections, the setting in which the
vanishing-gradient claim is made. The gradient norm of each convolution's
kernel is measured on one fixed batch of digits at initialization and again
after training for `steps` SGD steps. The ratio of the first layer's norm
to the last layer's says how much of the gradient reaches the input side.
"""

import math
import time

import numpy as np

from cnnzoo.experiments import _common

NAME = "vanishing_gradients"
ACTIVATIONS = ("sigmoid", "tanh", "relu")
# The kernel initializers `build` can seed: Keras's random ones (their class
# names, e.g. HeNormal, work too).
INITIALIZERS = ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
                "lecun_normal", "orthogonal", "random_normal", "random_uniform",
                "truncated_normal", "variance_scaling")


def add_arguments(parser):
    parser.add_argument("--depths", default="5,10,20",
                        help="Comma-separated depths. Default: 5,10,20.")
    parser.add_argument("--steps", type=int, default=200,
                        help="SGD steps of training after the measurement at "
                             "initialization. Default: 200.")
    parser.add_argument("--batch-size", type=int, default=32, help="Default: 32.")
    parser.add_argument("--filters", type=int, default=8, help="Default: 8.")
    parser.add_argument("--initializer", default="glorot_uniform",
                        help="Kernel initializer: a random Keras one, "
                             f"{', '.join(INITIALIZERS)} (Keras's default: glorot_uniform; "
                             "try he_normal).")
    parser.add_argument("--learning-rate", type=float, default=0.01, help="Default: 0.01.")


def build(depth, activation, input_shape, num_classes, filters=8,
          initializer="glorot_uniform", seed=0):
    """The plain CNN: `depth` conv-activation pairs, pooling, softmax."""
    import keras

    from cnnzoo.layers import factory

    inputs = keras.Input(input_shape)
    x = inputs
    for i in range(depth):
        init = keras.initializers.get({"class_name": initializer,
                                       "config": {"seed": seed * 1000 + i}})
        x = keras.layers.Conv2D(filters, 3, padding="same", kernel_initializer=init,
                                name=f"conv{i + 1}")(x)
        x = factory.make_activation(activation, implementation="primitive",
                                    name=f"act{i + 1}")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=f"plain{depth}_{activation}")


def _ratio(norms):
    # None where the last layer gets no gradient at all, or a NaN or inf one.
    if not all(math.isfinite(n) for n in norms):
        return None
    return norms[0] / norms[-1] if norms[-1] > 0 else None


def _state(norms):
    """`"diverged"` (a NaN or inf gradient), `"dead"` (none at the last convolution) or `"ok"`."""
    if not all(math.isfinite(n) for n in norms):
        return "diverged"
    return "dead" if norms[-1] == 0 else "ok"


def _conv_norms(model, x, y, depth):
    import keras

    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    grads = _common.gradients(model, x, y, loss_fn)
    return [float(np.linalg.norm(grads[model.get_layer(f"conv{i + 1}").kernel.path]))
            for i in range(depth)]


def _parse_depths(depths):
    from cnnzoo import _validation as v

    def check_depth(name, depth):
        return v.check_int(name, depth, low=1, high=200)

    return v.check_list("depths", depths, check_depth, parse=int, what="depths (integers)")


def _check_initializer(initializer):
    import keras

    if initializer in INITIALIZERS:
        return initializer
    try:  # as `build` makes it: by name, seeded
        keras.initializers.get({"class_name": initializer, "config": {"seed": 0}})
    except (ValueError, TypeError, KeyError):
        from cnnzoo import _validation as v

        v.check_choice("initializer", initializer, INITIALIZERS)  # raises, with close matches
    return initializer


def run(out, *, depths=(5, 10, 20), steps=200, batch_size=32, filters=8,
        initializer="glorot_uniform", learning_rate=0.01, seed=0, activations=ACTIVATIONS,
        log=print):
    """Measures gradient norms per layer, activation and depth; writes the report.

    Args:
        out: the output folder.
        depths: network depths (number of convolutions).
        steps: SGD steps between the two measurements (0: only at init).
        batch_size: batch size of the training steps.
        filters: filters per convolution.
        initializer: Keras initializer name for the kernels, one of
            `INITIALIZERS` (or its class name); it must take a seed.
        learning_rate: SGD learning rate.
        seed: seeds the data order and the initializers.
        activations: which activations to compare.
    """
    import keras

    from cnnzoo import _validation as v

    out = _common.check_out(out)
    depths = _parse_depths(depths)
    steps = v.check_int("steps", steps, low=0)
    batch_size = v.check_int("batch_size", batch_size, low=1)
    filters = v.check_int("filters", filters, low=1)
    learning_rate = v.check_number("learning_rate", learning_rate, low=0.0,
                                   low_inclusive=False)
    seed = v.check_int("seed", seed)
    activations = [v.check_choice("activations", a, ACTIVATIONS) for a in activations]
    initializer = _check_initializer(initializer)

    ds = _common.load("digits", seed=seed)
    rng = np.random.default_rng(seed)
    probe = rng.choice(len(ds.x_train), size=min(128, len(ds.x_train)), replace=False)
    x_probe, y_probe = ds.x_train[probe], ds.y_train[probe]

    runs = []
    for depth in depths:
        for activation in activations:
            start = time.perf_counter()
            keras.utils.set_random_seed(seed)
            model = build(depth, activation, ds.input_shape, ds.num_classes, filters,
                          initializer, seed)
            at_init = _conv_norms(model, x_probe, y_probe, depth)
            record = {"depth": depth, "activation": activation, "norms_init": at_init,
                      "ratio_init": _ratio(at_init)}
            if steps:
                model.compile(optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9),
                              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
                order = _common.stream(len(ds.x_train), steps, batch_size, rng)
                model.fit(ds.x_train[order], ds.y_train[order], batch_size=batch_size,
                          epochs=1, shuffle=False, verbose=0)
                trained = _conv_norms(model, x_probe, y_probe, depth)
                _, val_acc = model.evaluate(ds.x_val, ds.y_val, verbose=0)
                record.update({
                    "norms_trained": trained,
                    "ratio_trained": _ratio(trained),
                    "state_trained": _state(trained),
                    "val_accuracy": float(val_acc),
                })
            record["seconds"] = round(time.perf_counter() - start, 2)
            runs.append(record)
            if log:
                msg = (f"depth {depth:3d} {activation:8s} first/last at init "
                       f"{_fmt(record['ratio_init'], at_init)}")
                if steps:
                    msg += (f", after {steps} steps {_fmt(record['ratio_trained'], trained)}, "
                            f"val acc {record['val_accuracy']:.3f}")
                log(msg)
            keras.backend.clear_session()

    figures = _plots(runs, depths, activations, steps)
    markdown = _markdown(runs, depths, activations, steps, batch_size, filters, initializer,
                         learning_rate, seed)
    data = {"experiment": NAME, "depths": depths, "activations": list(activations),
            "steps": steps, "batch_size": batch_size, "filters": filters,
            "initializer": initializer, "learning_rate": learning_rate, "seed": seed,
            "dataset": "digits", "runs": runs}
    files = _common.save(out, NAME, markdown, data, figures, log=log)
    return {**data, "files": files}


def _positive(norms):
    # A log axis cannot show 0 (a dead layer); leave a gap there.
    return [n if n > 0 else math.nan for n in norms]


def _nan(ratio):
    return math.nan if ratio is None else ratio


def _fmt(ratio, norms=None):
    if ratio is not None:
        return f"{ratio:.3g}"
    return f"n/a ({_state(norms)})" if norms else "n/a"


def _plots(runs, depths, activations, steps):
    fig, axes = _common.figure(ncols=len(depths))
    colors = {"sigmoid": "tab:red", "tanh": "tab:orange", "relu": "tab:blue"}
    for ax, depth in zip(axes[0], depths):
        for r in runs:
            if r["depth"] != depth:
                continue
            layers = np.arange(1, depth + 1)
            ax.semilogy(layers, _positive(r["norms_init"]), "-o", ms=3, color=colors[r["activation"]],
                        label=f"{r['activation']} (init)")
            if steps:
                ax.semilogy(layers, _positive(r["norms_trained"]), "--", color=colors[r["activation"]],
                            label=f"{r['activation']} ({steps} steps)")
        ax.set_title(f"depth {depth}")
        ax.set_xlabel("layer (1 = input side)")
        ax.set_ylabel("||dL/dW|| of the conv kernel")
    axes[0, 0].legend(fontsize=7)

    ratio_fig, ratio_axes = _common.figure()
    ax = ratio_axes[0, 0]
    for activation in activations:
        ratios = [_nan(next(r["ratio_init"] for r in runs
                            if r["depth"] == d and r["activation"] == activation)) for d in depths]
        ax.semilogy(depths, ratios, "-o", color=colors[activation], label=f"{activation} (init)")
        if steps:
            ratios = [_nan(next(r["ratio_trained"] for r in runs
                                if r["depth"] == d and r["activation"] == activation))
                      for d in depths]
            ax.semilogy(depths, ratios, "--s", color=colors[activation],
                        label=f"{activation} ({steps} steps)")
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.set_xlabel("depth")
    ax.set_ylabel("first-layer / last-layer gradient norm")
    ax.legend(fontsize=7)
    return {"per_layer": fig, "ratio": ratio_fig}


def _markdown(runs, depths, activations, steps, batch_size, filters, initializer,
              learning_rate, seed):
    def ratio(r, key):
        return _fmt(r[key], r["norms_init" if key == "ratio_init" else "norms_trained"])

    header = ["activation"] + [f"depth {d}: init" for d in depths]
    if steps:
        header += [f"depth {d}: after {steps} steps" for d in depths]
    rows = []
    for activation in activations:
        by_depth = {r["depth"]: r for r in runs if r["activation"] == activation}
        row = [activation] + [ratio(by_depth[d], "ratio_init") for d in depths]
        if steps:
            row += [ratio(by_depth[d], "ratio_trained") for d in depths]
        rows.append(row)
    table = _common.md_table(header, rows)
    acc_table = ""
    if steps:
        acc_rows = []
        for activation in activations:
            by_depth = {r["depth"]: r for r in runs if r["activation"] == activation}
            acc_rows.append([activation] + [f"{by_depth[d]['val_accuracy']:.3f}" for d in depths])
        acc_table = ("\nValidation accuracy after training (10 classes; chance is 0.1):\n\n"
                     + _common.md_table(["activation"] + [f"depth {d}" for d in depths],
                                        acc_rows) + "\n")

    deepest = max(depths)
    at_deepest = {r["activation"]: r["ratio_init"] for r in runs if r["depth"] == deepest}
    order = sorted(at_deepest, key=lambda a: _nan(at_deepest[a]))
    findings = [
        f"At initialization and depth {deepest}, the first layer gets "
        + ", ".join(f"{_fmt(at_deepest[a])}x ({a})" for a in order)
        + " of the last layer's gradient norm.",
    ]
    sig, rel = at_deepest.get("sigmoid"), at_deepest.get("relu")
    if sig is not None and rel is not None:
        if sig < rel:
            findings.append("The sigmoid network's gradient shrinks faster towards the input "
                            "than the ReLU network's, as the folklore says"
                            + ("; ReLU's does not vanish at initialization (within 10x)."
                               if rel > 0.1 else
                               f", but ReLU's shrinks too ({rel:.2g}x) with {initializer} "
                               "initialization."))
        else:
            findings.append("Here the sigmoid network's gradient does NOT shrink faster than "
                            "the ReLU network's, against the folklore.")
    if "tanh" in at_deepest and at_deepest["tanh"] is not None and at_deepest["tanh"] > 0.1:
        findings.append(f"tanh does not vanish here either ({_fmt(at_deepest['tanh'])}x at depth "
                        f"{deepest}): with {initializer} initialization its units start in the "
                        "linear region around 0, where its derivative is close to 1. The "
                        "sigmoid's derivative is at most 0.25, so it shrinks by about 4x per "
                        "layer even there.")
    if steps:
        learned = {r["activation"]: r["val_accuracy"] for r in runs if r["depth"] == deepest}
        findings.append(f"After {steps} steps at depth {deepest}, validation accuracy: "
                        + ", ".join(f"{a} {learned[a]:.2f}" for a in activations)
                        + " (chance: 0.10).")
        for r in runs:
            name = f"The depth-{r['depth']} {r['activation']} network"
            if r.get("state_trained") == "diverged":
                findings.append(
                    f"{name} diverged during training: its gradients became NaN or infinite "
                    f"(learning rate {learning_rate:g} is too high for it), so it has no ratio.")
            elif r.get("state_trained") == "dead" and r["activation"] == "relu":
                findings.append(
                    f"{name} died during training: its last convolution gets exactly zero "
                    f"gradient (every unit inactive), and it ends at validation accuracy "
                    f"{r['val_accuracy']:.2f}. ReLU's gradient does not vanish, it switches "
                    "off: the failure mode of plain deep ReLU networks without batch "
                    "normalization or residual connections.")
            elif r.get("state_trained") == "dead":
                findings.append(
                    f"{name} saturated during training: its last convolution gets exactly zero "
                    f"gradient (its units sit where {r['activation']} is flat), and it ends at "
                    f"validation accuracy {r['val_accuracy']:.2f}.")
        findings.append("A few hundred steps is short: the numbers after training show where "
                        "learning had started, not converged behaviour.")

    return f"""# Vanishing gradients in plain deep CNNs

Plain CNNs of depth {", ".join(map(str, depths))}: 3x3 convolutions ({filters} filters,
{initializer} initialization), each followed by the activation, no batch normalization, no
residual connections; flatten and softmax. Digits (8x8), one fixed batch of
128 training images for the measurements; SGD (learning rate {learning_rate:g},
momentum 0.9, batch {batch_size}) for {steps} steps in between; seed {seed}. ReLU is
`cnnzoo.layers.ReLU`.

Ratio of the first convolution's kernel-gradient norm to the last one's (1 = the gradient
reaches the input side undiminished; much less than 1 = it vanishes):

{table}
{acc_table}
What comes out:

""" + "\n".join(f"- {f}" for f in findings) + """

The per-layer norms are in the JSON file and plotted in `vanishing_gradients_per_layer.png`
(log scale); the ratios in `vanishing_gradients_ratio.png`.
"""
