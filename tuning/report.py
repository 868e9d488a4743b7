"""The results of a search, read from the oracle's trials.

`collect(oracle)` turns the trials into rows (one per trial, failed ones
with their reason); `rank` orders them; `table` prints them; `write_results`
writes `results.json` and `results.csv`; `plot` draws the objective against
each searched rate. Everything works from the oracle alone, whatever tuner
ran the trials.
"""

import csv
import io
import math
import os

from cnnzoo import _atomic
from tuning.progress import HIDDEN_PREFIX, NO_REASON, failure_reason, trial_number

METRICS = ("val_accuracy", "val_loss", "accuracy", "loss")
# What a trial records besides its metrics, reported as columns too.
EXTRA = ("best_epoch", "epochs", "seconds")


def _number(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def collect(oracle):
    """One dict per trial, in trial order.

    Keys: `trial` (1-based number), `trial_id`, `status`, `values` (the
    hyperparameters; Hyperband's bookkeeping under `tuner` instead), `score`
    (the objective), the metrics of the best epoch (`val_accuracy`,
    `val_loss`, `accuracy`, `loss`), `best_epoch`, `epochs`, `seconds` and
    `reason` (why a trial failed, else `None`).
    """
    rows = []
    for trial_id in sorted(oracle.trials):
        trial = oracle.trials[trial_id]
        values = dict(trial.hyperparameters.values)
        row = {
            "trial": trial_number(trial_id),
            "trial_id": trial_id,
            "status": trial.status,
            "values": {k: _clean(v) for k, v in values.items() if not k.startswith(HIDDEN_PREFIX)},
            "score": _number(trial.score) if trial.status == "COMPLETED" else None,
        }
        tuner = {k[len(HIDDEN_PREFIX):]: v for k, v in values.items()
                 if k.startswith(HIDDEN_PREFIX)}
        if tuner:
            row["tuner"] = tuner
        for name in METRICS + EXTRA:
            row[name] = (_number(trial.metrics.get_last_value(name))
                         if trial.metrics.exists(name) else None)
        row["reason"] = failure_reason(trial.message) if trial.status != "COMPLETED" else None
        rows.append(row)
    return rows


def _clean(value):
    return round(value, 6) if isinstance(value, float) else value


def rank(rows, direction="max"):
    """Completed trials best first, then the others in trial order."""
    done = [r for r in rows if r["status"] == "COMPLETED" and r["score"] is not None]
    done.sort(key=lambda r: r["score"], reverse=direction == "max")
    return done + [r for r in rows if r not in done]


def hyperparameter_names(rows):
    names = []
    for row in rows:
        for key in row["values"]:
            if key not in names:
                names.append(key)
    return names


def _fmt(value, digits=4):
    """`digits` decimals; significant digits where those would show 0 (a learning rate)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:.4g}"
        if 0 < abs(value) < 10.0 ** -digits:
            return f"{value:.{max(digits, 2)}g}"
        return f"{value:.{digits}f}"
    return str(value)


def table(rows, direction="max"):
    """The ranked table as text: rank, trial, rates, metrics, time, status."""
    ranked = rank(rows, direction)
    names = hyperparameter_names(rows)
    short = {n: n.replace("block_dropout_rate", "block_rate").replace("dropout_", "")
             for n in names}
    header = (["rank", "trial"] + [short[n] for n in names]
              + ["val_acc", "val_loss", "epochs", "time_s", "status"])
    lines = []
    for i, row in enumerate(ranked):
        done = row["status"] == "COMPLETED"
        epochs = "-" if row["epochs"] is None else str(int(row["epochs"]))
        cells = ([str(i + 1) if done else "-", str(row["trial"])]
                 + [_fmt(row["values"].get(n), 2) for n in names]
                 + [_fmt(row["val_accuracy"]), _fmt(row["val_loss"]), epochs,
                    _fmt(row["seconds"], 1), "ok" if done else row["status"].lower()])
        lines.append(cells)
    widths = [max(len(h), *(len(c[j]) for c in lines)) if lines else len(h)
              for j, h in enumerate(header)]
    out = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    out += ["  ".join(c.rjust(w) for c, w in zip(cells, widths)) for cells in lines]
    failed = [r for r in ranked if r["status"] != "COMPLETED"]
    for row in failed:
        out.append(f"trial {row['trial']} {row['status'].lower()}: "
                   f"{row['reason'] or NO_REASON}")
    return "\n".join(out)


def write_results(rows, folder, *, meta=None, direction="max"):
    """Writes `results.json` (settings, best trial, ranked trials) and `results.csv`.

    Returns:
        `(json_path, csv_path)`.
    """
    ranked = rank(rows, direction)
    best = ranked[0] if ranked and ranked[0]["status"] == "COMPLETED" else None
    json_path = os.path.join(folder, "results.json")
    _atomic.write_json(json_path, {"search": meta or {}, "best": best, "trials": ranked})
    names = hyperparameter_names(rows)
    fields = (["rank", "trial", "trial_id", "status"] + names + ["score", *METRICS, *EXTRA,
                                                                  "reason"])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for i, row in enumerate(ranked):
        record = {k: row.get(k) for k in fields if k in row}
        record.update(row["values"])
        record["rank"] = i + 1 if row["status"] == "COMPLETED" else ""
        writer.writerow({k: ("" if record.get(k) is None else record.get(k)) for k in fields})
    csv_path = os.path.join(folder, "results.csv")
    _atomic.write_text(csv_path, buffer.getvalue())
    return json_path, csv_path


def plot(rows, path, *, objective="val_accuracy", direction="max"):
    """Draws the objective against each searched hyperparameter, one panel each.

    Failed trials are drawn as red crosses on the axis floor; the best trial
    is circled. Returns `path`, or `None` when no trial completed.
    """
    fig = figure(rows, objective=objective, direction=direction)
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    _atomic.write_bytes(path, buffer.getvalue())
    return path


def figure(rows, *, objective="val_accuracy", direction="max"):
    """The matplotlib figure `plot` saves (`None` when no trial completed)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; set before pyplot loads
    import matplotlib.pyplot as plt

    names = hyperparameter_names(rows)
    done = [r for r in rows if r["status"] == "COMPLETED" and r["score"] is not None]
    if not done or not names:
        return None
    best = rank(rows, direction)[0]
    scores = [r["score"] for r in done]
    floor = min(scores) - 0.05 * (max(scores) - min(scores) or 1.0)
    # At least 6.5 inches wide: the title's width.
    fig, axes = plt.subplots(1, len(names), figsize=(max(4 * len(names), 6.5), 3.4),
                             squeeze=False)
    for ax, name in zip(axes[0], names):
        xs_all = [r["values"].get(name) for r in rows]
        categorical = any(isinstance(x, str) for x in xs_all if x is not None)
        categories = sorted({str(x) for x in xs_all if x is not None}) if categorical else None

        def position(x, categories=categories):
            return categories.index(str(x)) if categories else x

        ax.scatter([position(r["values"][name]) for r in done if name in r["values"]],
                   [r["score"] for r in done if name in r["values"]], alpha=0.8)
        failed = [r for r in rows if r not in done and name in r["values"]]
        if failed:
            ax.scatter([position(r["values"][name]) for r in failed], [floor] * len(failed),
                       marker="x", color="red", label="failed")
            ax.legend(loc="best", fontsize=8)
        if name in best["values"]:
            ax.scatter([position(best["values"][name])], [best["score"]], s=160,
                       facecolors="none", edgecolors="black", linewidths=1.5)
        if categories:
            ax.set_xticks(range(len(categories)), categories)
            ax.set_xlim(-0.5, len(categories) - 0.5)  # not on the frame
        ax.set_xlabel(name)
        ax.set_ylabel(objective)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{objective} against each searched hyperparameter "
                 f"({len(done)} trials; best circled)")
    # Fixed margins in inches (tick labels, axis labels, the title): what
    # `tight_layout` would find, without the extra full draw it costs (about
    # 0.2 s, a twentieth of a short search).
    width, height = fig.get_size_inches()
    left, right, gap, bottom, top = 0.8, 0.4, 1.0, 0.6, 0.45
    panel = (width - left - right - gap * (len(names) - 1)) / len(names)
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                        top=1 - top / height, wspace=gap / panel)
    return fig
