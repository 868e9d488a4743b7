"""Experiments that reproduce the classic claims about ReLU and Dropout in CNNs.

Each experiment writes a short markdown report with its numbers, a JSON file
and PNG plots into one folder, and reports what comes out, including where
it disagrees with the folklore:

- `activations`: ReLU, sigmoid and tanh and their derivatives.
- `vanishing-gradients`: per-layer gradient norms in plain deep CNNs.
- `overfitting`: `simple_cnn` on a small subset of digits with dropout
  0, 0.25 and 0.5, and with `augment`, each also with augmentation.
- `ordered-batches`: a class-sorted stream of shapes against a shuffled one,
  with and without dropout.

Run one with `cnnzoo experiment NAME --out DIR`, or
`cnnzoo.experiments.run("overfitting", "out/")`.
"""

import importlib

from cnnzoo import _validation as v

# name -> module
EXPERIMENTS = {
    "activations": "cnnzoo.experiments.activations",
    "vanishing-gradients": "cnnzoo.experiments.vanishing_gradients",
    "overfitting": "cnnzoo.experiments.overfitting",
    "ordered-batches": "cnnzoo.experiments.ordered_batches",
}


def names():
    """The experiment names."""
    return tuple(EXPERIMENTS)


def module(name):
    """The module of experiment `name`."""
    v.check_choice("name", name, names())
    return importlib.import_module(EXPERIMENTS[name])


def run(name, out, **options):
    """Runs experiment `name`, writing its report, JSON and plots into `out`.

    Args:
        name: one of `names()`.
        out: the output folder (created; files in it are replaced).
        **options: the experiment's own options (see its `run`).

    Returns:
        A dict with the experiment's results and `"files"`, the paths written.
    """
    return module(name).run(out, **options)
