"""loss_curve draws the logged losses of a train_log.csv, in order, with an optional reference line."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from sde_diffusion.plot.training import loss_curve  # noqa: E402
from sde_diffusion.training.log import TrainLogger, read_log  # noqa: E402


def test_loss_curve_from_a_written_log(tmp_path):
    logger = TrainLogger(tmp_path, tensorboard=False)
    for step, loss in [(50, 1.0), (100, 0.5), (150, 0.25)]:
        logger.log(step, loss, 1e-3, 10.0, step / 10)
    logger.close()
    rows = read_log(tmp_path / "train_log.csv")
    fig, ax = plt.subplots()
    assert loss_curve(rows, ax=ax, reference=0.2, reference_label="exact score") is ax
    line, ref = ax.get_lines()
    np.testing.assert_array_equal(line.get_xdata(), [50, 100, 150])  # the steps, as logged
    np.testing.assert_array_equal(line.get_ydata(), [1.0, 0.5, 0.25])  # exact: repr() round trip
    assert ref.get_ydata()[0] == 0.2 and ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["training loss", "exact score"]
    plt.close(fig)


def test_loss_curve_sorts_and_uses_time_axis():
    rows = [{"elapsed_s": 2.0, "loss": 0.3}, {"elapsed_s": 1.0, "loss": 0.6}]
    ax = loss_curve(rows, x_key="elapsed_s", logy=False)
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), [1.0, 2.0])
    assert ax.get_xlabel() == "training time (s)" and ax.get_yscale() == "linear"
    plt.close(ax.figure)


@pytest.mark.parametrize(
    "rows, match",
    [
        ([], "empty"),
        ([{"step": 1}], "'loss'"),
        ([{"step": 1, "loss": float("nan")}], "non-finite"),
        ([{"step": 1, "loss": -1.0}], "logy"),
    ],
)
def test_loss_curve_refuses_bad_rows(rows, match):
    with pytest.raises(ValueError, match=match):
        loss_curve(rows)
    plt.close("all")
