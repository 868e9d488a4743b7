"""Throughput and search benchmarks on one NVIDIA GPU, with the JAX backend.

The GPU machines this project is checked on have JAX and PyTorch but not
TensorFlow; Keras, Keras Tuner and cnnzoo's other dependencies travel as
wheels (see `benchmarks/README.md` for the exact command). This script:

1. checks, before anything runs, that every module it needs imports and
   says which are missing;
2. runs the search benchmark: cnnzoo's default search against plain
   Keras Tuner, trials per hour and best objective (target on a GPU:
   >= 5x);
3. runs the FLOP/s benchmark (against an in-run bfloat16 and float32
   matmul ceiling) and the training-throughput benchmark (cnnzoo vs
   keras.applications / a hand-written Keras model, with GPU-sized
   batches, one model at a time);
4. writes JSON and a Markdown table (`--json`, `--markdown`) after every
   part, so that a run cut short keeps what it measured.

`--tiny` shrinks everything so that the whole script runs in a couple of
minutes on a CPU (`KERAS_BACKEND=jax python benchmarks/gpu.py --tiny
--block-tensorflow`): that is how it is checked where no GPU is lent, so
that the first GPU run does not fail on a trivial error.
"""

import argparse
import importlib
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
# Trials share the GPU: no JAX preallocation of 75% of its memory.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    # The repository's copy of cnnzoo and tuning, whether or not it is installed.
    sys.path.insert(0, ROOT)

# name -> (input size, channels, batch size, steps per timed sample)
GPU_THROUGHPUT = {
    "simple_cnn": (28, 1, 512, 20),
    "vgg16": (64, 3, 128, 5),
    "resnet50": (64, 3, 128, 5),
    "mobilenet_v2": (64, 3, 128, 5),
}
TINY_THROUGHPUT = {
    "simple_cnn": (28, 1, 16, 1),
    "mobilenet_v2": (32, 3, 4, 1),
}
# ((model, input size, batch size, steps), matmul size)
GPU_FLOPS = (("vgg16", 64, 128, 5), 8192)
TINY_FLOPS = (("vgg11", 32, 2, 1), 256)
GPU_SEARCH = {"max_trials": 16, "epochs": 5, "repeats": 2}
TINY_SEARCH = {"max_trials": 2, "epochs": 1, "repeats": 1}
REQUIRED = ("numpy", "jax", "keras", "keras_tuner", "cnnzoo", "tuning")


def check_modules(names=REQUIRED):
    """Names of the modules in `names` that do not import (with the reason)."""
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as error:  # any import failure is a set-up problem
            missing.append(f"{name} ({type(error).__name__}: {error})")
    return missing


class _NoTensorFlow:
    """A meta-path finder under which `import tensorflow` fails as if it were absent.

    (Putting `None` into `sys.modules` is not the same: Keras checks
    `"tensorflow" in sys.modules` to decide whether it runs inside tf.data.)
    """

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by --block-tensorflow)",
                                      name=name)
        return None


def block_tensorflow():
    """Makes every later `import tensorflow` fail, as on the GPU machines."""
    if "tensorflow" in sys.modules:
        raise RuntimeError("TensorFlow is already imported; block it before anything loads")
    sys.meta_path.insert(0, _NoTensorFlow())


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true",
                        help="Tiny sizes: a check that runs in minutes on a CPU.")
    parser.add_argument("--only", action="append",
                        choices=["search", "flops", "throughput"],
                        help="Run only this part (repeatable).")
    parser.add_argument("--json", default=None, help="Write the results as JSON here.")
    parser.add_argument("--markdown", default=None, help="Write the Markdown table here.")
    parser.add_argument("--block-tensorflow", action="store_true",
                        help="Make `import tensorflow` fail, as on the GPU machines.")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.block_tensorflow:
        block_tensorflow()
    missing = check_modules()
    if missing:
        print("benchmarks/gpu.py: cannot run, missing modules:\n  " + "\n  ".join(missing),
              file=sys.stderr)
        return 2
    import keras

    from cnnzoo import _atomic, bench
    from cnnzoo.bench import flops, harness, search, throughput

    if keras.backend.backend() != "jax":
        print(f"benchmarks/gpu.py: expected KERAS_BACKEND=jax, got {keras.backend.backend()}",
              file=sys.stderr)
        return 2
    import jax

    devices = [str(d) for d in jax.devices()]
    print(f"JAX devices: {', '.join(devices)}", flush=True)
    if not args.tiny and not any(d.platform == "gpu" for d in jax.devices()):
        print("benchmarks/gpu.py: no GPU visible to JAX (use --tiny for a CPU check)",
              file=sys.stderr)
        return 2
    # The search first: its target (>= 5x) is the one only a GPU can judge; then
    # the FLOP/s part (one model), and throughput (four models, most of their
    # time spent compiling). Results are written after every part, so a run
    # cut short keeps what it measured.
    parts = args.only or ["search", "flops", "throughput"]
    start = time.perf_counter()
    rows = []

    def guarded(name, fn):
        t0 = time.perf_counter()
        print(f"gpu.py: {name} ...", flush=True)
        try:
            rows.extend(fn())
        except Exception as error:  # report and go on with the other parts
            import traceback

            traceback.print_exc()
            rows.append(harness.row(name, name, status="error",
                                    note=f"error: {type(error).__name__}: {error}"))
        finally:
            keras.config.set_dtype_policy("float32")
            keras.backend.clear_session()
        print(f"gpu.py: {name} done in {time.perf_counter() - t0:.0f} s", flush=True)
        write()  # after every part: a run cut short keeps what it measured

    def write():
        results = {"machine": bench.machine(), "quick": bool(args.tiny),
                   "seconds": time.perf_counter() - start, "rows": rows}
        results["machine"]["devices"] = devices
        command = "KERAS_BACKEND=jax python benchmarks/gpu.py" + (" --tiny" if args.tiny else "")
        text = bench.to_markdown(results, command=command)
        if args.json:
            _atomic.write_json(args.json, results)
        if args.markdown:
            _atomic.write_text(args.markdown, text)
        return text

    # The search part runs `tuning.search`, whose report plots.
    data = "digits" if not check_modules(["sklearn"]) else "shapes"
    plots = not check_modules(["matplotlib"])
    if "search" in parts and not plots:
        rows.append(harness.unavailable("search", "matplotlib is missing (the search "
                                                  "report plots); add its wheel"))
    if "search" in parts and plots:
        budget = TINY_SEARCH if args.tiny else GPU_SEARCH
        guarded("search", lambda: search.run(
            quick=True, repeats=budget["repeats"], max_trials=budget["max_trials"],
            epochs=budget["epochs"], data=data, target=5.0,
            where="one GPU"))
    if "flops" in parts:
        if args.tiny:
            guarded("flops", lambda: flops.run(quick=True, repeats=2, config=TINY_FLOPS[0],
                                               matmul_n=TINY_FLOPS[1], small_batch=2))
        else:
            # A GPU needs big matmuls and batches to approach its ceiling.
            guarded("flops", lambda: flops.run(quick=False, repeats=7, config=GPU_FLOPS[0],
                                               matmul_n=GPU_FLOPS[1]))
    if "throughput" in parts:
        # One part per model, each written when done: compiling the big models
        # takes most of this part's time, and a run cut short keeps the rest.
        table = TINY_THROUGHPUT if args.tiny else GPU_THROUGHPUT
        for name in table:
            guarded(f"throughput {name}", lambda name=name: throughput.run(
                quick=args.tiny, table={name: table[name]}, repeats=2 if args.tiny else 7))
    print(write())
    return 0 if all(r["status"] != "error" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
