"""The figures a run writes: titled, whole-epoch ticks with markers (one epoch is a point), a learning-rate panel,
a confusion matrix with its split, colour bar and a normalised form. Each is rendered into the test's folder;
the images are looked at when the plotting changes."""

import math

import pytest
from PIL import Image

from mlpvision.plotting import epoch_axis, pyplot
from mlpvision.train.evaluate import save_confusion_png
from mlpvision.train.metrics import plot_curves

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _history(epochs: int) -> list[dict]:
    rows = []
    for e in range(1, epochs + 1):
        lr = 2e-3 * 0.5 * (1 + math.cos(math.pi * e / epochs)) + 1e-5
        rows.append(
            {
                "epoch": e,
                "step": 100 * e,
                "lr": lr,
                "train_loss": 1.5 / e,
                "train_top1": 100 - 40 / e,
                "val_loss": 1.6 / e,
                "val_top1": 100 - 45 / e,
            }
        )
    return rows


@pytest.mark.parametrize("epochs", [1, 3, 40])
def test_epoch_axis_has_whole_epoch_ticks_and_room_around_one_epoch(epochs):
    plt = pyplot()
    fig, ax = plt.subplots()
    ep = list(range(1, epochs + 1))
    ax.plot(ep, ep, marker="o")
    epoch_axis(ax, ep)
    fig.canvas.draw()
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert lo < 1 and hi > epochs and hi - lo >= 1  # a single epoch is a point inside the axis, not its edge
    plt.close(fig)


@pytest.mark.parametrize("epochs", [1, 12])
def test_curves_png_has_three_panels_and_a_title(tmp_path, epochs):
    path = tmp_path / f"curves_{epochs}.png"
    plot_curves(_history(epochs), path, title="mixer_t4_28 on fashion-mnist (run quick)")
    with Image.open(path) as im:
        assert im.width > 2.5 * im.height  # loss, top-1 and learning-rate panels side by side
        assert len(im.convert("L").getcolors(maxcolors=1 << 16) or ()) > 50  # something is drawn


def test_curves_of_a_resumed_run_with_new_columns(tmp_path):
    from mlpvision.train.metrics import write_metrics

    rows = _history(2)
    rows[1]["val_seconds"] = 0.5  # a column the first row (written by an older version) lacks
    write_metrics(tmp_path, rows, plots=True, title="t")
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0]
    assert header.endswith("val_seconds")


@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_png_has_title_and_colour_bar(tmp_path, normalize):
    confusion = [[(90 if i == j else 1) + (i * j) % 3 for j in range(10)] for i in range(10)]
    path = save_confusion_png(
        confusion, CLASSES, tmp_path / f"confusion_{normalize}.png", title="m on d\ntest split", normalize=normalize
    )
    with Image.open(path) as im:
        assert im.width > im.height  # the colour bar beside the square matrix


def test_log_axis_labels_the_given_values_and_no_minor_ticks():
    from mlpvision.plotting import log_axis

    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([16, 36, 64, 784], [0.04, 0.1, 0.2, 2.0])
    log_axis(ax, "x", [16, 36, 64, 784])
    log_axis(ax, "y")
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["16", "36", "64", "784"]
    assert not any(t.get_text() for t in ax.xaxis.get_minorticklabels())
    assert not any(t.get_text() for t in ax.yaxis.get_minorticklabels())
    plt.close(fig)
