"""The evaluation's figures keep every label inside the picture and no legend over a value label."""

from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from lightning_app.evaluation import analysis, reports, spectrograms  # noqa: E402

RATE = 16000


def renderer(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("width", [8.0, 8.4, 14.0])
def test_the_colour_bar_and_its_label_stay_clear_of_the_right_edge(width):
    t = np.arange(RATE) / RATE
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    tracks = {"clean": tone, "noisy input": tone + 0.01 * np.random.default_rng(0).standard_normal(RATE)}
    tracks["Wiener (decision-directed)"] = 0.5 * tracks["noisy input"]
    fig, (scale,) = spectrograms.figure([tracks], RATE, width=width, row_labels=["clip000"])
    assert scale["vmin"] <= -85  # three-digit tick labels: the widest the bar shows
    r = renderer(fig)
    bar = fig.axes[-1]
    label = bar.yaxis.label
    assert label.get_text() == "dB (full-scale sine = 0)"
    edge = fig.bbox.x1
    # inside the picture with room to spare: another font may set the label wider
    assert label.get_window_extent(r).x1 <= edge - 0.2 * fig.dpi, (label.get_window_extent(r), edge)
    assert fig.get_tightbbox(r).x1 <= fig.get_size_inches()[0] - 0.2


def test_the_retention_legend_covers_no_value_label_and_a_louder_bar_says_so():
    systems = [
        "noisy input",
        "spectral gating (stationary)",
        "Wiener (decision-directed)",
        "model (mix 1)",
        "model (mix 0.5)",
    ]  # long names (narrow axes): the old legend, inside at the lower right, covered "0.99"
    for values in ([1.0, 0.62, 1.2, 0.98, 0.99], [1.0, 0.12, 3.85, 0.98, 0.99]):
        overall = [
            {"system": s, "amplitude_retention": v, "clips": 4} for s, v in zip(systems, values, strict=True)
        ]
        fig = reports.retention_figure(overall, reports.system_styles(systems), "\npaired corpus")
        r = renderer(fig)
        labels = [t for t in fig.axes[0].texts]
        assert len(labels) == len(systems)
        legend = fig.legends[0].get_window_extent(r)
        for text in labels:
            box = text.get_window_extent(r)
            assert not overlaps(box, legend), text.get_text()
            assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1, text.get_text()  # inside the picture
        assert fig.bbox.y0 <= legend.y0 and legend.x1 <= fig.bbox.x1
    assert [t.get_text().strip() for t in labels][1:3] == ["0.12  MUTING", "3.85  LOUDER"]


def test_the_curves_legend_is_inside_the_figure_and_over_no_panel(monkeypatch):
    steps = np.arange(0, 1000, 100)
    monkeypatch.setattr(
        analysis,
        "read_scalars",
        lambda path, tags=None: {t: (steps, np.cos(steps / 300 + len(str(path)))) for t in tags},
    )
    runs = {"runA": Path("a"), "runB": Path("bb"), "a much longer run label v3": Path("ccc")}
    fig = analysis.plot_curves(runs, ["val/loss", "val/si_sdr", "val/pesq", "val/amplitude_retention"])
    r = renderer(fig)
    legend = fig.legends[0].get_window_extent(r)
    assert fig.bbox.x0 <= legend.x0 and legend.x1 <= fig.bbox.x1 and legend.y1 <= fig.bbox.y1
    for ax in fig.axes:
        if ax.get_visible() and ax.axison:
            assert not overlaps(ax.get_tightbbox(r), legend), ax.get_title()
