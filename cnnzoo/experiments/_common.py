"""What every experiment shares: writing its outputs, gradients, plots."""

import io
import os

import numpy as np

from cnnzoo import _atomic
from cnnzoo import _validation as v


def figure(ncols=1, nrows=1, width=5.0, height=3.6):
    """A matplotlib figure rendered with Agg (no pyplot, no display needed)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def png_bytes(fig):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def save(out, name, markdown, data, figures, log=print):
    """Writes `{name}.md`, `{name}.json` and `{name}_{plot}.png`, each atomically.

    Args:
        out: the folder.
        name: the file stem.
        markdown: the report's text.
        data: JSON-serializable results.
        figures: `{plot name: matplotlib Figure}`.
        log: where to say what was written (`None`: silent).

    Returns:
        The list of paths written.
    """
    out = os.fspath(out)
    os.makedirs(out, exist_ok=True)
    paths = []
    for plot, fig in figures.items():
        path = os.path.join(out, f"{name}_{plot}.png")
        _atomic.write_bytes(path, png_bytes(fig))
        paths.append(path)
    json_path = os.path.join(out, f"{name}.json")
    _atomic.write_json(json_path, _json_safe(data), allow_nan=False)
    md_path = os.path.join(out, f"{name}.md")
    _atomic.write_text(md_path, markdown.rstrip() + "\n")
    paths = [md_path, json_path] + paths
    if log:
        for path in paths:
            log(f"wrote {path}")
    return paths


def _json_safe(obj):
    # Strict JSON has no NaN or infinity: they become null.
    if isinstance(obj, dict):
        return {str(k): _json_safe(val) for k, val in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(val) for val in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    return obj


def check_out(out):
    return v.check_output_folder("out", out)


def gradients(model, x, y, loss_fn):
    """`{variable path: gradient}` of `loss_fn(y, model(x, training=True))`.

    Keras 3 has no backend-neutral gradient op, so this dispatches on the
    backend, the way a custom `train_step` does.
    """
    import keras

    backend = keras.backend.backend()
    variables = model.trainable_variables
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = [g.numpy() for g in tape.gradient(loss, variables)]
    elif backend == "jax":
        import jax

        trainable = [var.value for var in variables]
        non_trainable = [var.value for var in model.non_trainable_variables]

        def compute(trainable):
            pred, _ = model.stateless_call(trainable, non_trainable, x, training=True)
            return loss_fn(y, pred)

        grads = [np.asarray(g) for g in jax.grad(compute)(trainable)]
    elif backend == "torch":
        import torch

        loss = loss_fn(y, model(x, training=True))
        grads = [keras.ops.convert_to_numpy(g)
                 for g in torch.autograd.grad(loss, [var.value for var in variables])]
    else:
        v.fail("Expected the tensorflow, jax or torch backend.", "backend", backend)
    return {var.path: g for var, g in zip(variables, grads)}


def stream(n, steps, batch_size, rng):
    """Indices for `steps` batches, cycling through fresh permutations of n."""
    total = steps * batch_size
    reps = -(-total // n)
    return np.concatenate([rng.permutation(n) for _ in range(reps)])[:total]


def per_class_accuracy(y_true, y_pred, num_classes):
    return [float(np.mean(y_pred[y_true == k] == k)) if np.any(y_true == k) else float("nan")
            for k in range(num_classes)]


def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def load(name, **kwargs):
    """`cnnzoo.data.load_dataset`, pixels scaled to [0, 1]."""
    from cnnzoo import data

    ds = data.load_dataset(name, **kwargs)
    for split in ("x_train", "x_val", "x_test"):
        setattr(ds, split, (getattr(ds, split) / 255.0).astype("float32"))
    return ds
