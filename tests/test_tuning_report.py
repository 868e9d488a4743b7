"""The search report's plot: every label inside the figure, nothing left half-written."""

import itertools
import os

import pytest

from tuning import report


def _rows(names, n=6):
    rows = []
    for i in range(n):
        values = {}
        for j, name in enumerate(names):
            if name == "dropout_type":
                values[name] = ("standard", "spatial")[i % 2]
            else:
                values[name] = round(0.1 * ((i + j) % 6), 1)
        rows.append({"trial": i + 1, "trial_id": str(i), "values": values,
                     "status": "FAILED" if i == 0 else "COMPLETED",
                     "score": None if i == 0 else 0.9 + 0.01 * i})
    return rows


@pytest.mark.parametrize("names", [
    ["dropout_rate"],
    ["dropout_rate", "block_dropout_rate"],
    ["dropout_rate", "block_dropout_rate", "dropout_type"],
])
def test_every_label_is_inside_the_figure_and_panels_do_not_overlap(names):
    import matplotlib.pyplot as plt

    fig = report.figure(_rows(names), objective="val_accuracy")
    try:
        renderer = fig.canvas.get_renderer()
        fig.draw(renderer)  # as savefig does: tick labels placed
        page = fig.bbox
        (title,) = [t.get_window_extent(renderer) for t in fig.texts]  # the suptitle
        assert page.x0 <= title.x0 and title.x1 <= page.x1 and title.y1 <= page.y1
        boxes = [ax.get_tightbbox(renderer) for ax in fig.axes]
        assert len(boxes) == len(names)
        for box in boxes:  # tick labels, axis labels and legend included
            assert page.x0 <= box.x0 and box.x1 <= page.x1, (box, page)
            assert page.y0 <= box.y0 and box.y1 <= title.y0, (box, title)
        for left, right in itertools.pairwise(boxes):
            assert left.x1 < right.x0, (left, right)
    finally:
        plt.close(fig)


def test_plot_writes_a_png_or_nothing(tmp_path):
    path = tmp_path / "plot.png"
    assert report.plot(_rows(["dropout_rate"]), str(path)) == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["plot.png"]  # no temporary left

    failed_only = [dict(r, status="FAILED", score=None) for r in _rows(["dropout_rate"])]
    assert report.plot(failed_only, str(tmp_path / "none.png")) is None
    assert os.listdir(tmp_path) == ["plot.png"]


def test_table_shows_small_rates_and_learning_rates():
    rows = [{"trial": 1, "trial_id": "0", "status": "COMPLETED", "score": 0.9,
             "values": {"dropout_rate": 0.25, "learning_rate": 0.003861, "dropout_type": "spatial"},
             "val_accuracy": 0.9, "val_loss": 0.3, "epochs": 2, "seconds": 1.25},
            {"trial": 2, "trial_id": "1", "status": "COMPLETED", "score": 0.8,
             "values": {"dropout_rate": 0.0, "learning_rate": 0.0003296, "dropout_type": "standard"},
             "val_accuracy": 0.8, "val_loss": 0.00004, "epochs": 2, "seconds": 1200.0}]
    header, first, second = report.table(rows).splitlines()
    assert header.split() == ["rank", "trial", "rate", "learning_rate", "type", "val_acc",
                              "val_loss", "epochs", "time_s", "status"]
    assert first.split() == ["1", "1", "0.25", "0.0039", "spatial", "0.9000", "0.3000", "2",
                             "1.2", "ok"]
    assert second.split() == ["2", "2", "0.00", "0.00033", "standard", "0.8000", "4e-05", "2",
                              "1200", "ok"]


def test_a_failed_trial_without_a_reason_says_where_it_is():
    # A distributed chief gets no reason over gRPC: the table said "None".
    rows = [{"trial": 1, "trial_id": "0", "status": "FAILED", "score": None, "reason": None,
             "values": {"dropout_rate": 0.25}, "val_accuracy": None, "val_loss": None,
             "epochs": None, "seconds": 1.0},
            {"trial": 2, "trial_id": "1", "status": "FAILED", "score": None,
             "reason": "FailedTrialError: loss became nan at epoch 1",
             "values": {"dropout_rate": 0.5}, "val_accuracy": None, "val_loss": None,
             "epochs": None, "seconds": 1.0}]
    lines = report.table(rows).splitlines()
    assert f"trial 1 failed: {report.NO_REASON}" in lines
    assert "trial 2 failed: FailedTrialError: loss became nan at epoch 1" in lines
    assert "None" not in "\n".join(lines)
