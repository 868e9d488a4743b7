"""Helpers that more than one test file uses (test files do not import each other)."""

import ast

import numpy as np


def weight_signature(model):
    """(kernel shape, strides) of every layer with a kernel, sorted."""
    return sorted((tuple(layer.kernel.shape), tuple(getattr(layer, "strides", ())))
                  for layer in model.layers if hasattr(layer, "kernel"))


def max_pool_reference(x, size, stride, pad):
    """PyTorch's MaxPool2d: -inf padding on both sides, "valid" windows (NHWC)."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=-np.inf)
    rows = (x.shape[1] - size) // stride + 1
    cols = (x.shape[2] - size) // stride + 1
    return np.array([[[x[:, i * stride:i * stride + size, j * stride:j * stride + size].max(
        axis=(1, 2))[n] for j in range(cols)] for i in range(rows)] for n in range(len(x))])


def code_only(source):
    """`source` without docstrings and comments: only executable code counts."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Module)) and node.body and \
                isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
            node.body = node.body[1:] or [ast.Pass()]
    return ast.unparse(tree)


class Cut(Exception):
    """Stands for a kill of a training run: raised once its first epoch's checkpoint is written."""


def cut_after_first_epoch(monkeypatch):
    """Makes `cnnzoo.train.train` raise `Cut` right after its first epoch's checkpoint."""
    from cnnzoo import train

    write = train.RunCheckpoint.on_epoch_end

    def on_epoch_end(self, epoch, logs=None):
        write(self, epoch, logs)
        raise Cut

    monkeypatch.setattr(train.RunCheckpoint, "on_epoch_end", on_epoch_end)
