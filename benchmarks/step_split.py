"""Where a ResNet-18 training step's time goes: the optimizer's update against the rest.

The search benchmark's `resnet18` case (`benchmarks/RESULTS_search_resnet18.md`)
spends most of cnnzoo's time in training steps. This measures, side by side,
one step of that case's model (ResNet-18 at 32x32, 5 classes, batch 32, built
and compiled by the search's `ZooHyperModel` with its defaults, the dtype
policy `precision="auto"` picks, 14 steps per call) in three variants:

- `search`: as the search compiles it (Adam);
- `sgd`: the same model compiled with plain SGD (no momentum): the forward
  and backward passes and the cheapest update, so `search - sgd` is what
  Adam's update adds to a step;
- `search_xla`: as `search`, with `jit_compile=True` (XLA would fuse
  Adam's elementwise passes).

Each variant runs in a fresh process of its own; rounds rotate the order, so
a slow moment of the shared machine hits every variant. A process traces and
runs one untimed epoch, then times `--epochs` epochs. Writes
`benchmarks/step_split.json` and `benchmarks/STEP_SPLIT.md`.

    PYTHONPATH=$PWD python benchmarks/step_split.py --rounds 5
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

from cnnzoo import _atomic

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = ("search", "sgd", "search_xla")
SAMPLES, BATCH, STEPS_PER_CALL = 448, 32, 14


def child(variant, epochs):
    """One variant's step time, measured in this process (a dict)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import keras_tuner as kt
    import numpy as np

    from cnnzoo import runtime
    from tuning.hypermodel import ZooHyperModel

    hypermodel = ZooHyperModel("resnet18", input_shape=(32, 32, 3), num_classes=5)
    # As the search sets itself up (`tuning.driver`): threads counted from
    # the step's FLOPs before TensorFlow starts, then precision and XLA.
    step_flops = runtime.count_step_flops(lambda: hypermodel.build(kt.HyperParameters()),
                                          BATCH)
    setup = runtime.configure(model="resnet18", step_flops=step_flops)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (SAMPLES, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 5, SAMPLES)
    model = hypermodel.build(kt.HyperParameters())
    if variant == "sgd":
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss=model.loss,
                      metrics=["accuracy"])
    model.jit_compile = variant == "search_xla" or bool(setup["jit"])
    model.steps_per_execution = STEPS_PER_CALL
    runtime.prepare_training(model, x, y)
    start = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    first = time.perf_counter() - start
    start = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    return {"ms_per_step": round(1000 * seconds / (epochs * SAMPLES // BATCH), 1),
            "first_epoch_s": round(first, 2), "precision": setup["precision"],
            "threads": setup["threads"], "optimizer": type(model.optimizer).__name__,
            "jit": bool(model.jit_compile)}


def run_child(variant, epochs):
    load = os.getloadavg()[0]
    out = subprocess.run([sys.executable, __file__, "--child", variant, "--epochs", str(epochs)],
                         check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["load"] = round(load, 2)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.epochs)))
        return
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=HERE).stdout.strip()
    rows = []
    for i in range(args.rounds):
        order = VARIANTS[i % 3:] + VARIANTS[:i % 3]
        row = {"round": i + 1, "order": ",".join(order)}
        for variant in order:
            row[variant] = run_child(variant, args.epochs)
            print(f"round {i + 1} {variant}: {row[variant]}", flush=True)
        row["update_share"] = round(1 - row["sgd"]["ms_per_step"]
                                    / row["search"]["ms_per_step"], 3)
        row["xla_ratio"] = round(row["search_xla"]["ms_per_step"]
                                 / row["search"]["ms_per_step"], 3)
        rows.append(row)

    def median(key):
        return round(statistics.median(r[key]["ms_per_step"] for r in rows), 1)

    summary = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit, "cpu_count": os.cpu_count(),
        "setup": {k: rows[0]["search"][k] for k in ("precision", "threads", "optimizer")},
        "median_ms_per_step": {variant: median(variant) for variant in VARIANTS},
        "median_update_share": round(statistics.median(r["update_share"] for r in rows), 3),
        "median_xla_ratio": round(statistics.median(r["xla_ratio"] for r in rows), 3),
        "rows": rows,
    }
    _atomic.write_json(os.path.join(HERE, "step_split.json"), summary, indent=1)
    setup = summary["setup"]
    lines = [
        "# A ResNet-18 training step: the optimizer's update against the rest",
        "",
        f"Generated by `benchmarks/step_split.py` on {summary['date']} at commit `{commit}` "
        f"({summary['cpu_count']} CPU cores, shared). The search benchmark's `resnet18` "
        f"model (32x32, 5 classes, batch {BATCH}, {STEPS_PER_CALL} steps per call) as the "
        f"search compiles it ({setup['optimizer']}, {setup['precision']}, intra-op threads "
        f"{setup['threads'] or 'default'}); each cell is one fresh process's mean over "
        f"{args.epochs} epochs after an untimed one. `update share` = 1 - sgd / search: "
        "the part of a step that Adam's update adds over plain SGD's.",
        "",
        "| round | order | search (ms/step) | sgd (ms/step) | search, XLA (ms/step) | "
        "update share | XLA / search | load before |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['round']} | {r['order']} | {r['search']['ms_per_step']} | "
            f"{r['sgd']['ms_per_step']} | {r['search_xla']['ms_per_step']} | "
            f"{r['update_share']} | {r['xla_ratio']} | "
            f"{', '.join(str(r[v]['load']) for v in VARIANTS)} |")
    m = summary["median_ms_per_step"]
    lines += [
        "",
        f"Medians: search {m['search']} ms, sgd {m['sgd']} ms, search with XLA "
        f"{m['search_xla']} ms per step; Adam's update {summary['median_update_share']:.0%} "
        f"of a step; XLA {summary['median_xla_ratio']}x the step's time.",
        "",
    ]
    _atomic.write_text(os.path.join(HERE, "STEP_SPLIT.md"), "\n".join(lines))


if __name__ == "__main__":
    main()
