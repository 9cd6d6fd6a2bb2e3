"""The documentation's pictures come from the suite's own outputs (scripts/docs_figures.py)."""

import csv

import pytest

from lightning_app.evaluation import figures
from lightning_app.restoring.networks import BUNDLED_MODEL


def _write(path, rows):
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["group", "system", "clips", "si_sdr_i"])
        writer.writeheader()
        writer.writerows(rows)


def test_the_gains_chart_reads_both_test_sets_and_leaves_out_the_ablation(tmp_path):
    _write(
        tmp_path / "report.csv",
        [
            {"group": "overall", "system": "model (mix 1)", "clips": 4, "si_sdr_i": 9.0},
            {"group": "content: music", "system": "noisy input", "clips": 2, "si_sdr_i": 0.0},
            {"group": "content: music", "system": "model (mix 1)", "clips": 2, "si_sdr_i": 8.5},
            {"group": "content: speech", "system": "Wiener", "clips": 2, "si_sdr_i": -1.0},
        ],
    )
    _write(
        tmp_path / "real.csv",
        [
            {"group": "music", "system": "model", "clips": 3, "si_sdr_i": 2.5},
            {"group": "music, input SNR 0-5 dB", "system": "model", "clips": 1, "si_sdr_i": 4.0},
            {"group": "music", "system": "model (no guard)", "clips": 3, "si_sdr_i": 2.0},
        ],
    )
    gains = figures.read_gains(tmp_path)
    assert gains["model"] == {"procedural music": 8.5, "real music": 2.5}, gains
    assert gains["Wiener"] == {"procedural speech": -1.0}
    line = figures.gains_chart(tmp_path, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").stat().st_size > 10_000
    assert "2 systems x 3 contents" in line, line  # the no-guard row is the ablation's, not a system


def test_a_later_run_of_the_model_alone_replaces_its_bars_and_keeps_the_baselines(tmp_path):
    with_baselines, model_alone = tmp_path / "with_baselines", tmp_path / "model_alone"
    with_baselines.mkdir(), model_alone.mkdir()
    _write(
        with_baselines / "real.csv",
        [
            {"group": "music", "system": "model", "clips": 3, "si_sdr_i": 2.5},
            {"group": "speech", "system": "model", "clips": 3, "si_sdr_i": 6.0},
            {"group": "music", "system": "Wiener", "clips": 3, "si_sdr_i": -13.0},
        ],
    )
    _write(model_alone / "real.csv", [{"group": "music", "system": "model", "clips": 3, "si_sdr_i": 4.0}])
    gains = figures.read_gains(with_baselines, model_alone)
    assert gains["model"] == {"real music": 4.0}, "the model's bars must all come from its later run"
    assert gains["Wiener"] == {"real music": -13.0}
    line = figures.gains_chart([with_baselines, model_alone], tmp_path / "chart.png")
    assert "2 systems x 1 contents" in line, line  # no stale speech bar of the model's first run


def test_no_report_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no report.csv or real.csv"):
        figures.read_gains(tmp_path)


@pytest.mark.slow
def test_the_excerpts_are_real_recordings_when_there_is_a_corpus(tmp_path):
    from tests.helpers import make_corpus

    corpus = make_corpus(tmp_path / "real", seconds=7.0)
    line = figures.restored_excerpts(BUNDLED_MODEL.with_suffix(".onnx"), tmp_path / "x.png", corpus)
    assert "real recordings" in line and "music" in line and "speech" in line, line
    assert (tmp_path / "x.png").stat().st_size > 20_000
