"""evaluate and bench run end to end on a tiny checkpoint and report real numbers."""

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from lightning_app import bench, evaluate
from lightning_app.data.dsp import si_sdr_db
from lightning_app.evaluation.baselines import baselines
from lightning_app.evaluation.pipeline import CHAIN_COLUMNS
from lightning_app.evaluation.reports import system_styles
from lightning_app.evaluation.scoring import COLUMNS, checkpoint_name, model_process, restoring_model
from lightning_app.restoring.export import export_model
from tests.helpers import perturbed_checkpoint


def _report_rows(out):
    return list(csv.DictReader(open(out / "report.csv")))


@pytest.mark.slow
def test_evaluation_report_holds_every_system_metric_group_and_plot(trained_run, tmp_path):
    out = tmp_path / "eval"
    args = [
        trained_run["best"],
        "--experiment",
        "supervised_unet",
        "--output-dir",
        out,
        "--workers",
        "1",
        "--clips",
        "6",
        "--seconds",
        "1.0",
        "--mix",
        "1.0",
        "0.5",
        "--visqol-clips",
        "2",
    ]
    assert evaluate.main([str(a) for a in args]) == 0
    rows = _report_rows(out)
    overall = {r["system"]: r for r in rows if r["group"] == "overall"}
    model = checkpoint_name(Path(trained_run["best"]))
    systems = {"noisy input", *baselines(), f"{model} (mix 1)", f"{model} (mix 0.5)"}
    assert set(overall) == systems
    for system, row in overall.items():
        for column in COLUMNS:
            assert math.isfinite(float(row[column])), (system, column)
    assert float(overall["noisy input"]["si_sdr_i"]) == 0.0 and float(overall["noisy input"]["pesq_i"]) == 0.0
    groups = {r["group"] for r in rows}
    assert any(g.startswith("noise: ") for g in groups) and any(g.startswith("input SNR ") for g in groups)
    assert "content: speech" in groups and not any(g.startswith("content: music") for g in groups)
    report = (out / "report.md").read_text()
    assert "speech measures" in report and "level-blind" in report
    for system in systems:
        assert f"| {system} |" in report
    for column in COLUMNS:
        assert column in report
    assert "| si_sdr (dB) | si_sdr_i (dB) |" in report and "rtf (s per s of audio)" in report, (
        "units in headers"
    )
    assert "| system | < 5 dB (" in report, "each SNR bucket's header says how many clips it holds"
    for plot in (
        "si_sdr_i_vs_input_snr.png",
        "pesq_vs_input_snr.png",
        "amplitude_retention.png",
        "spectrograms.png",
    ):
        assert (out / plot).read_bytes()[:4] == b"\x89PNG", plot
        assert f"]({plot})" in report


@pytest.mark.slow
def test_evaluation_of_music_and_speech_reports_each_content(tmp_path):
    out = tmp_path / "eval"
    args = [
        "--experiment",
        "supervised_unet",
        "data.clean.mix.music=1.0",
        "--clips",
        "4",
        "--seconds",
        "1.0",
        "--no-baselines",
        "--workers",
        "1",
        "--visqol-clips",
        "2",
        "--output-dir",
        str(out),
    ]
    assert evaluate.main(args) == 0
    rows = {r["group"]: r for r in _report_rows(out) if r["system"] == "noisy input"}
    assert rows["content: speech"]["clips"] == rows["content: music"]["clips"] == "2"  # stratified
    assert math.isnan(float(rows["content: music"]["pesq"])) and math.isnan(
        float(rows["content: music"]["stoi"])
    )
    assert float(rows["overall"]["pesq"]) == float(rows["content: speech"]["pesq"])  # PESQ: speech clips only
    for content in ("speech", "music"):  # ViSQOL on clips 0 and 1: one of each (the set interleaves contents)
        assert 1.0 <= float(rows[f"content: {content}"]["visqol"]) <= 5.0
        assert float(rows[f"content: {content}"]["lsd"]) > 0
    report = (out / "report.md").read_text()
    for title in (
        "SI-SDR improvement (dB) by content",
        "Amplitude retention by content",
        "ViSQOL (MOS-LQO) by content",
    ):
        assert f"## {title}" in report
    assert report.index("by content") < report.index("by noise type")
    assert "| system | music (2) | speech (2) |" in report
    assert "speech clips only (2 of 4 clips)" in report


@pytest.mark.slow
def test_half_mix_sits_between_the_model_and_the_input(trained_run, tmp_path):
    out = tmp_path / "eval"
    assert (
        evaluate.main(
            [
                str(trained_run["best"]),
                "--output-dir",
                str(out),
                "--workers",
                "1",
                "--clips",
                "4",
                "--seconds",
                "1.0",
                "--mix",
                "1.0",
                "0.5",
                "0.0",
                "--no-baselines",
                "--visqol-clips",
                "0",
            ]
        )
        == 0
    )
    overall = {
        r["system"].rsplit("(mix ", 1)[-1]: float(r["amplitude_retention"])
        for r in _report_rows(out)
        if r["group"] == "overall" and "mix" in r["system"]
    }
    rows = {r["system"]: r for r in _report_rows(out) if r["group"] == "overall"}
    dry = [r for s, r in rows.items() if s.endswith("(mix 0)")][0]
    assert float(dry["si_sdr"]) == __import__("pytest").approx(float(rows["noisy input"]["si_sdr"]), abs=1e-4)
    assert len(overall) == 3


def test_classic_baselines_run_and_the_wiener_filter_removes_stationary_hiss():
    import numpy as np
    import torch

    from lightning_app.evaluation.baselines import baselines
    from lightning_app.metrics.functional import si_sdr

    rate = 16000
    t = np.arange(2 * rate) / rate
    clean = (0.3 * np.sin(2 * np.pi * 300 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    noisy = clean + 0.05 * np.random.default_rng(0).standard_normal(len(t)).astype(np.float32)

    def score(x):
        return float(si_sdr(torch.from_numpy(x)[None], torch.from_numpy(clean)[None]))

    outputs = {name: process(noisy, rate) for name, process in baselines().items()}
    for name, out in outputs.items():
        assert out.shape == noisy.shape and np.all(np.isfinite(out)), name
        assert np.max(np.abs(out - noisy)) > 1e-3, f"{name} left the input unchanged"
    # Our own filter must do its job; spectral gating's quality is what it is (it over-suppresses).
    assert score(outputs["Wiener (decision-directed)"]) > score(noisy) + 6.0


@pytest.mark.slow
def test_evaluation_on_a_paired_corpus_names_its_files(trained_run, tmp_path):
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    for name in ("f0.wav", "music/f1.wav", "speech/f2.wav"):  # content folders are reported per content
        clean = 0.2 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)
        for side, audio in (("clean", clean), ("noisy", clean + 0.05 * rng.standard_normal(16000))):
            (tmp_path / "corpus" / side / name).parent.mkdir(parents=True, exist_ok=True)
            sf.write(tmp_path / "corpus" / side / name, audio, 16000)
    out = tmp_path / "eval"
    assert (
        evaluate.main(
            [
                str(trained_run["best"]),
                "--data",
                str(tmp_path / "corpus"),
                "--output-dir",
                str(out),
                "--workers",
                "1",
                "--no-baselines",
                "--visqol-clips",
                "0",
            ]
        )
        == 0
    )
    report = (out / "report.md").read_text()
    assert "paired corpus" in report and "(3 files)" in report
    groups = {r["group"] for r in _report_rows(out)}
    assert {"content: music", "content: speech"} <= groups and "content: paired" not in groups
    # The model restores the clean files too: the report says how much it changes clean audio.
    assert "## Clean input" in report
    model = checkpoint_name(Path(trained_run["best"]))
    line = next(x for x in report.splitlines() if x.startswith(f"| {model} (overall) |"))
    clips, median, p10, retention = (float(v) for v in line.strip("|").split("|")[1:5])
    assert clips == 3 and math.isfinite(median) and p10 <= median and 0.3 < retention < 3.0


@pytest.mark.slow
def test_bench_prints_throughput_step_time_and_real_time_factor(capsys):
    assert bench.main(["--steps", "1", "--audio-seconds", "2", "use=[model/tiny,data/smoke]"]) == 0
    out = capsys.readouterr().out
    for phrase in ("segments/s per worker", "ms per step", "real-time factor"):
        assert phrase in out


@pytest.mark.slow
def test_reconstruction_chains_show_each_steps_loss(tmp_path, capsys):
    out = tmp_path / "chains"
    args = [
        "--chains",
        "stft:512:128",
        "magnitude:512:128",
        "mel:512:128:40",
        "--clips",
        "3",
        "--seconds",
        "1.0",
        "--workers",
        "1",
        "--output-dir",
        str(out),
    ]
    assert evaluate.main(args) == 0
    rows = {r["system"].split(" (")[0]: r for r in csv.DictReader(open(out / "chains.csv"))}
    stft, magnitude, mel = (
        rows["STFT -> iSTFT"],
        rows["magnitude -> Griffin-Lim"],
        rows["mel 40 -> inverse mel -> Griffin-Lim"],
    )
    assert float(stft["snr"]) > 60 and float(stft["waveform_correlation"]) > 0.999  # lossless step
    assert (
        float(magnitude["waveform_correlation"]) < 0.5 < float(magnitude["spectral_correlation"])
    )  # phase lost
    assert float(mel["spectral_correlation"]) < float(magnitude["spectral_correlation"])  # mel loses more
    for row in rows.values():
        for column in CHAIN_COLUMNS:
            assert math.isfinite(float(row[column])), (row["system"], column)
    assert "| STFT -> iSTFT (n_fft 512, hop 128) |" in (out / "chains.md").read_text()
    assert evaluate.main(["--chains", "vae:1024", "--output-dir", str(out)]) == 2
    assert "expected stft|magnitude|mel" in capsys.readouterr().err


def test_a_checkpoint_keeps_one_colour_across_its_mix_values_in_the_plots():
    systems = [
        "noisy input",
        "Wiener (decision-directed)",
        "a/version_0 (mix 1)",
        "a/version_0 (mix 0.5)",
        "a/version_0 (mix 0.3)",
        "b/version_2 (mix 1)",
    ]
    styles = system_styles(systems)
    family = [styles[s] for s in systems if s.startswith("a/")]
    assert len({str(s["color"]) for s in family}) == 1, "one colour per checkpoint"
    assert len({s["linestyle"] for s in family}) == 3, "its mix values told apart by the line"
    colours = [
        str(styles[s]["color"])
        for s in ("Wiener (decision-directed)", "a/version_0 (mix 1)", "b/version_2 (mix 1)")
    ]
    assert len(set(colours)) == 3 and styles["noisy input"]["color"] == "black"


def test_an_export_is_scored_on_onnx_runtime_apart_from_its_checkpoint(tmp_path):
    checkpoint = perturbed_checkpoint(tmp_path, "supervised_unet")
    exported, _ = export_model(checkpoint, tmp_path / "exported")
    assert checkpoint_name(exported) == "supervised_unet.onnx" != checkpoint_name(checkpoint)
    assert "ONNX Runtime" in restoring_model(exported).engine
    assert not hasattr(restoring_model(checkpoint), "engine"), (
        "a checkpoint restores in torch (as_network wraps it)"
    )
    (by_export, rate), (by_checkpoint, _) = model_process(exported), model_process(checkpoint)
    audio = 0.1 * np.random.default_rng(4).standard_normal(int(1.3 * rate)).astype(np.float32)
    restored = by_export(audio, rate)
    assert si_sdr_db(by_checkpoint(audio, rate), restored) >= 60.0
    assert si_sdr_db(audio, restored) < 40.0, "the model did nothing: the comparison would prove nothing"
