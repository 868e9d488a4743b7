"""Helpers that more than one test file uses (test files do not import each other)."""

import ast
import configparser
import importlib
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from packaging.requirements import Requirement

from cnnzoo import _validation as v


def _ci_installs(distribution):
    """Whether `pip install -e ".[test]"` (CI's environment) installs `distribution` here.

    Read from setup.cfg's `test` extra, its environment markers evaluated for
    this Python (keras-hub, for one, needs Python 3.11).
    """
    config = configparser.ConfigParser()
    config.read(pathlib.Path(__file__).resolve().parents[1] / "setup.cfg")
    for line in config["options.extras_require"]["test"].splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            if req.name == distribution and (req.marker is None or req.marker.evaluate()):
                return True
    return False


def needs(module, distribution, extra):
    """Imports an optional dependency for a test, or skips the test with its install command.

    A dependency that CI's environment has (the `test` extra here) is not
    optional for the tests: without it the test fails, saying so, rather than
    passing as skipped.

    Args:
        module: the module to import (`"keras_hub"`).
        distribution: its pip name (`"keras-hub"`).
        extra: the cnnzoo extra that installs it (`"jax"`), or a pip
            requirement (`"keras-hub>=0.32"`) where no extra does.

    Returns:
        The module.
    """
    if v.module_installed(module):
        return importlib.import_module(module)
    install = f"pip install 'cnnzoo[{extra}]'" if extra.isidentifier() else \
        f"pip install '{extra}'"
    if _ci_installs(distribution):
        pytest.fail(f"{module} is missing, and CI's environment has it: {install} "
                    f"(or pip install -e '.[test]')", pytrace=False)
    pytest.skip(install)


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


def torch_state(name, input_shape=(32, 32, 3), seed=0, **kwargs):
    """A random state dict with torchvision's (timm's) names and shapes for `name`."""
    import keras

    import cnnzoo
    from cnnzoo.weights import convert

    info = cnnzoo.model_info(name)
    shell = cnnzoo.create_model(name, input_shape=input_shape, **kwargs)
    mapping = convert.name_map(info["family"], "timm", name)
    rng = np.random.default_rng(seed)
    out = {}
    for layer in shell.layers:
        key = mapping(layer.name)
        if info["family"] == "vgg" and layer.name in convert.HEAD_LAYERS:
            key = {"fc1_dense": "pre_logits.fc1", "fc2_dense": "pre_logits.fc2",
                   "predictions": "head.fc"}[layer.name]
        if isinstance(layer, keras.layers.Conv2D):
            h, w, i, o = layer.kernel.shape
            out[f"{key}.weight"] = rng.normal(0, (2 / (h * w * i)) ** 0.5, (o, i, h, w))
            if layer.use_bias:
                out[f"{key}.bias"] = rng.normal(0, 0.1, o)
        elif isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            out[f"{key}.weight"] = rng.uniform(0.5, 1.5, n)
            out[f"{key}.bias"] = rng.normal(0, 0.1, n)
            out[f"{key}.running_mean"] = rng.normal(0, 0.1, n)
            out[f"{key}.running_var"] = rng.uniform(0.5, 1.5, n)
            out[f"{key}.num_batches_tracked"] = np.array(7)
        elif isinstance(layer, keras.layers.Dense):
            i, o = layer.kernel.shape
            out[f"{key}.weight"] = rng.normal(0, i ** -0.5, (o, i))
            out[f"{key}.bias"] = rng.normal(0, 0.1, o)
    return {k: np.asarray(a, "float32" if a.dtype.kind == "f" else a.dtype) for k, a in out.items()}


def save_torch(state, path):
    from safetensors.numpy import save_file

    save_file(state, str(path))
    return str(path)


def kill_at(script_args, marker, timeout=300):
    """Runs `python SCRIPT ARGS...` and SIGKILLs it once the file `marker` exists.

    The repository is on the child's path, so it imports this checkout's
    cnnzoo whether or not it is installed.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, *map(str, script_args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert marker.exists(), proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return env


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


def train_in_fresh_process(out, **kwargs):
    """`cnnzoo.train.train("simple_cnn", out=out, **kwargs)` in a new interpreter.

    Returns its printed `"resumed_from test_metrics"`. A fresh process has
    imported (registered) none of cnnzoo's layers when it reads a run back.
    """
    script = (f"from cnnzoo import train as T; r = T.train('simple_cnn', out={str(out)!r}, "
              f"**{kwargs!r}); print(r.resumed_from, r.test_metrics)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=240, check=False, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()
