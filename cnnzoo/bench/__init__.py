"""The benchmark suite behind `cnnzoo bench` and `benchmarks/RESULTS.md`.

Each benchmark is a module here with `NAME` and `run(quick=True) -> rows`;
`run_suite` runs them in one process and collects the rows with a
description of the machine; `to_markdown` renders the results table.
Every number is a ratio (or fraction) measured side by side with
interleaved repeats (see `cnnzoo.bench.harness`); absolute times are
context only.

Nothing here imports Keras at module level: `cnnzoo bench --help` is instant.
"""

import datetime
import gc
import importlib
import os
import platform
import sys
import time
import traceback

from cnnzoo import _validation as v

# name -> (module, one line). The order is the order of the table.
BENCHMARKS = {
    "startup": ("cnnzoo.bench.startup", "`cnnzoo --help` and the first training step"),
    "throughput": ("cnnzoo.bench.throughput",
                   "training throughput: cnnzoo vs the plain Keras build"),
    "implementation": ("cnnzoo.bench.implementation",
                       "primitive vs keras ReLU/Dropout, with and without XLA"),
    "flops": ("cnnzoo.bench.flops", "achieved FLOP/s vs an in-run matmul ceiling"),
    "precision": ("cnnzoo.bench.precision",
                  "mixed bfloat16 vs float32: speed and the accuracy kept"),
    "serving": ("cnnzoo.bench.serving", "SavedModel `serve` vs predict_on_batch"),
    "search": ("cnnzoo.bench.search", "trials/hour: cnnzoo search vs plain Keras Tuner"),
    "transfer": ("cnnzoo.bench.transfer",
                 "head-dropout search on pretrained backbones vs plain Keras Tuner"),
}


def names():
    """The benchmark names, in table order."""
    return list(BENCHMARKS)


def machine():
    """A description of the machine and software the suite runs on."""
    import keras

    from cnnzoo import runtime

    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    flags = runtime.cpu_flags()
    units = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    choice = runtime.resolve()
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": model or platform.processor() or platform.machine(),
        "cpu_units": units,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "devices": choice["devices"],
        "defaults": choice["reason"],
    }
    try:
        info["backend_version"] = importlib.import_module(
            {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[info["backend"]]
        ).__version__
    except (ImportError, KeyError, AttributeError):
        pass
    return info


def run_suite(only=None, quick=True, stream=None, search_case=None):
    """Runs benchmarks and returns `{"machine", "quick", "seconds", "rows"}`.

    Args:
        only: a benchmark name or a list of names (default: all).
        quick: the quick sizes (the whole suite in a few minutes on 2 cores).
        stream: where progress lines go (default: stderr).
        search_case: a named case of the search benchmark
            (`cnnzoo.bench.search.CASES`) instead of its default search.

    A benchmark whose prerequisites are missing reports an "unavailable"
    row; one that crashes reports an "error" row with the reason, and the
    others still run.
    """
    stream = stream or sys.stderr
    wanted = names() if only is None else ([only] if isinstance(only, str) else list(only))
    for name in wanted:
        v.check_choice("only", name, names())
    if search_case is not None:
        from cnnzoo.bench import search

        search.check_case(search_case)
        if wanted != ["search"]:
            v.fail("Expected a search case with the search benchmark alone (`--only search`).",
                   "only", only)
    import keras

    start = time.perf_counter()
    rows = []
    seconds = {}
    info = machine()
    for name in wanted:
        module_name, _ = BENCHMARKS[name]
        t0 = time.perf_counter()
        print(f"cnnzoo bench: {name} ...", file=stream, flush=True)
        try:
            module = importlib.import_module(module_name)
            options = {"case": search_case} if name == "search" and search_case else {}
            rows.extend(module.run(quick=quick, **options))
        except Exception as error:  # one broken benchmark must not hide the others
            detail = " ".join(str(error).split())[:300]
            rows.append({"benchmark": name, "name": name, "metric": None, "status": "error",
                         "target": None, "met": None, "context": "",
                         "note": f"error: {type(error).__name__}: {detail}",
                         "median": None, "q1": None, "q3": None, "iqr": None, "n": 0})
            traceback.print_exc(file=stream)
        finally:
            keras.config.set_dtype_policy("float32")
            keras.backend.clear_session()
            # The next benchmark should not pay for this one's garbage.
            gc.collect()
        seconds[name] = time.perf_counter() - t0
        print(f"cnnzoo bench: {name} done in {seconds[name]:.0f} s", file=stream, flush=True)
    return {"machine": info, "quick": bool(quick), "seconds": time.perf_counter() - start,
            "benchmark_seconds": seconds, "rows": rows}


def _num(x):
    if x is None:
        return ""
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def _cell(value):
    # A `|` inside a cell (a target like `|gap| <= 0.5`) would split the row.
    return str(value).replace("|", "\\|")


def to_markdown(results, command="cnnzoo bench --quick --markdown benchmarks/RESULTS.md"):
    """The results as a Markdown document (the format of `benchmarks/RESULTS.md`)."""
    m = results["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Regenerate with `{command}`.",
        "",
        f"- Date: {m['date']}; mode: {'quick' if results['quick'] else 'full'}; "
        f"suite wall time {results['seconds']:.0f} s"
        + (" (" + ", ".join(f"{k} {t:.0f} s" for k, t in
                            results.get("benchmark_seconds", {}).items()) + ")"
           if results.get("benchmark_seconds") else ""),
        f"- Machine: {m['cpu']}, {m['cores']} cores visible; units: "
        f"{', '.join(m['cpu_units']) or 'none'}; devices: {', '.join(m['devices'])}",
        f"- Software: Python {m['python']}, Keras {m['keras']}, backend {m['backend']} "
        f"{m.get('backend_version', '')}",
        f"- Runtime defaults: {m['defaults']}",
        "",
        "Every number is the median over interleaved repeats, with the interquartile "
        "range (q1-q3): `speedup` = baseline time / candidate time (> 1: the candidate is "
        "faster), `fraction` = achieved / ceiling, `seconds` = wall time.",
        "",
        "| benchmark | comparison | metric | median | q1-q3 | n | target | met | context |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        r = {k: _cell(x) if isinstance(x, str) else x for k, x in r.items()}
        if r["status"] != "ok":
            lines.append(f"| {r['benchmark']} | {r['name']} | | | | | | {r['status']} | "
                         f"{r['note']} |")
            continue
        met = {True: "yes", False: "**no**", None: ""}[r["met"]]
        context = "; ".join(x for x in (r["context"], r["note"]) if x)
        lines.append(
            f"| {r['benchmark']} | {r['name']} | {r['metric']} | {_num(r['median'])} | "
            f"{_num(r['q1'])}-{_num(r['q3'])} | {r['n']} | {r['target'] or ''} | {met} | "
            f"{context} |")
    return "\n".join(lines) + "\n"


# A line in a results file after which everything is kept when the file is
# regenerated (`benchmarks/RESULTS.md` keeps its GPU section, measured on
# another machine, when the CPU table above it is rewritten).
KEEP_MARKER = "<!-- Kept when this file is regenerated: -->"


def with_kept_tail(text, previous):
    """`text`, followed by what `previous` (the file's old text) holds from `KEEP_MARKER` on."""
    if not previous or KEEP_MARKER not in previous:
        return text
    return text + "\n" + previous[previous.index(KEEP_MARKER):]
