"""evaluate and bench run end to end on a tiny checkpoint and report real numbers."""

import csv
import math

from lightning_app import bench, evaluate


def test_evaluate_scores_the_checkpoint_against_the_noisy_input(trained_run, tmp_path):
    out = tmp_path / "eval"
    assert evaluate.main([trained_run["best"], "--output-dir", str(out), "--workers", "1"]) == 0
    rows = list(csv.DictReader(open(out / "report.csv")))
    assert [r["system"] for r in rows][0] == "noisy input" and len(rows) == 2
    model = rows[1]
    for column in evaluate.COLUMNS:
        assert math.isfinite(float(model[column])), column
    # Same set as the run's last validation: the SI-SDR of the checkpoint must agree.
    assert float(model["si_sdr"]) == __import__("pytest").approx(trained_run["metrics"]["val/si_sdr"], abs=1e-3)
    assert "| noisy input |" in (out / "report.md").read_text()


def test_bench_prints_throughput_step_time_and_real_time_factor(capsys):
    assert bench.main(["--steps", "1", "--audio-seconds", "2", "use=[model/tiny,data/smoke]"]) == 0
    out = capsys.readouterr().out
    for phrase in ("segments/s per worker", "ms per step", "real-time factor"):
        assert phrase in out
