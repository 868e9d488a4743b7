"""Start-up: `cnnzoo --help`, and the first training step, each in a fresh process.

- `cnnzoo --help` is timed as a whole process (interpreter start included)
  against `python -c pass`, interleaved; the target is under 0.5 s.
- The first training step: a fresh process imports cnnzoo, builds
  `simple_cnn` with the default runtime choices, compiles and prepares it as
  `cnnzoo train` does (`cnnzoo.runtime.prepare_training`: the step is
  traced once) and trains one step, against a fresh process that does the
  same with plain Keras (a hand-written `keras.Sequential`, Keras defaults).
  Both are whole-process wall times up to the end of that step (the
  processes then exit without TensorFlow's teardown).
"""

import os
import shutil
import subprocess
import sys

from cnnzoo.bench import harness

NAME = "startup"

_ZOO_FIRST_STEP = """
import os
import numpy as np
from cnnzoo import runtime, pipeline, train
choice = runtime.configure()
model = pipeline.build_classifier("simple_cnn", (8, 8, 1), 10)
train.compile_model(model, jit=choice["jit"])
x = np.zeros((32, 8, 8, 1), "float32"); y = np.zeros((32,), "int32")
runtime.prepare_training(model, x, y)
model.train_on_batch(x, y)
os._exit(0)  # the first step is done: TensorFlow's teardown is not part of it
"""

_PLAIN_FIRST_STEP = """
import os
import numpy as np
import sys
sys.path.insert(0, {path!r})
from cnnzoo.bench.common import plain_simple_cnn
model = plain_simple_cnn((8, 8, 1), 10)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
x = np.zeros((32, 8, 8, 1), "float32"); y = np.zeros((32,), "int32")
model.train_on_batch(x, y)
os._exit(0)  # as the cnnzoo script does
"""


def _help_command():
    exe = shutil.which("cnnzoo")
    return [exe, "--help"] if exe else [sys.executable, "-m", "cnnzoo", "--help"]


def _process(cmd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")

    def run():
        result = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                                check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:3])} failed: "
                               f"{result.stderr.decode(errors='replace')[-400:]}")

    return run


def run(quick=True, repeats=None):
    """Returns the result rows."""
    repeats = repeats or (5 if quick else 9)
    rows = []
    fns = {"python -c pass": _process([sys.executable, "-c", "pass"]),
           "cnnzoo --help": _process(_help_command())}
    times = harness.interleave(fns, repeats=repeats, warmup=1)
    helps = harness.summarize(times["cnnzoo --help"])
    bare = harness.summarize(times["python -c pass"])
    rows.append(harness.row(NAME, "`cnnzoo --help` (whole process)", summary=helps,
                            metric="seconds", target="< 0.5", met=harness.at_most(helps, 0.5),
                            context=f"bare `python -c pass`: {harness.fmt_seconds(bare.median)}"))
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    steps = {"plain": _process([sys.executable, "-c", _PLAIN_FIRST_STEP.format(path=here)]),
             "cnnzoo": _process([sys.executable, "-c", _ZOO_FIRST_STEP])}
    n = 2 if quick else max(3, repeats // 2)
    times = harness.interleave(steps, repeats=n, warmup=0)
    ratio = harness.speedup(times, "plain", "cnnzoo")
    rows.append(harness.row(
        NAME, "first training step (fresh process): cnnzoo vs plain Keras", summary=ratio,
        context=(f"plain {harness.fmt_seconds(harness.summarize(times['plain']).median)}, "
                 f"cnnzoo {harness.fmt_seconds(harness.summarize(times['cnnzoo']).median)} "
                 f"(import, build, compile, one step)"),
        note=("cnnzoo builds the raw-image classifier (rescaling inside the model) and "
              "prepares it as `cnnzoo train` does (the first step traced once)")))
    return rows
