"""The analysis notebooks run end to end (tiny settings), and the run-reading functions behind them."""

import math

import nbformat
import pytest
from torch.utils.tensorboard import SummaryWriter

from lightning_app.config import PROJECT_ROOT
from lightning_app.evaluation import analysis as A
from lightning_app.evaluation import notebooks as N

NOTEBOOKS = PROJECT_ROOT / "notebooks"
TINY = "trainer.max_epochs=1 data.train_examples_per_epoch=8"


def execute(name: str, monkeypatch, tmp_path, **env) -> str:
    """Runs notebooks/<name> in a fresh kernel with C2C_* settings; returns all its outputs as text."""
    settings = {"C2C_TINY_ROOT": str(tmp_path / "tiny"), "C2C_TINY_OVERRIDES": TINY, **env}
    return N.outputs_text(N.execute(NOTEBOOKS / name, settings, cwd=tmp_path, timeout=600))


def test_every_notebook_is_tested():
    tested = {
        "01_muting_loss.ipynb",
        "02_leakage_skips.ipynb",
        "03_reconstruction_chains.ipynb",
        "04_compare_runs.ipynb",
    }
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} == tested


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_stored_notebooks_show_their_figures_without_noise(path):
    """make notebooks-run stores every notebook executed, so a code host shows its figures: every code cell
    ran, at least one figure, no stderr (library warnings), no audio blobs, small enough for git."""
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), f"{path.name}: not executed; run make notebooks-run"
    assert N.figures(nb) >= 1, f"{path.name}: no stored figure"
    outputs = [o for cell in code for o in cell.outputs]
    assert not [o for o in outputs if o.get("name") == "stderr"], f"{path.name}: stderr stored"
    assert "<audio" not in N.outputs_text(nb), f"{path.name}: an audio player is stored"
    assert path.stat().st_size < 1_500_000, f"{path.name}: {path.stat().st_size} bytes"
    for cell in code:  # a training cell says one line per run, not a model summary and a progress bar
        text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
        assert "Total params" not in text and "it/s]" not in text, f"{path.name}: a noisy cell: {text[:300]}"


def _png() -> str:
    """A spectrogram-like figure, base64 PNG as a notebook stores it."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.imshow(
        np.random.default_rng(0).standard_normal((120, 400)).cumsum(axis=1), cmap="magma", aspect="auto"
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def test_storage_form_drops_audio_and_stderr_and_keeps_figures():
    nb, figure = nbformat.v4.new_notebook(), _png()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="UserWarning: something\n"),
        nbformat.v4.new_output("stream", name="stdout", text="one line per run\n"),
        nbformat.v4.new_output("display_data", data={"image/png": figure}),
        nbformat.v4.new_output("stream", name="stdout", text="1 noisy\n"),
        nbformat.v4.new_output("display_data", data={"text/html": "<audio controls></audio>"}),
        nbformat.v4.new_output("stream", name="stdout", text="2 denoised\n"),
        nbformat.v4.new_output("display_data", data={"text/html": "<audio controls></audio>"}),
    ]
    nb.cells.append(cell)
    stored = N.for_storage(nb)
    kinds = [o.get("name") or next(iter(o.get("data", {})), "") for o in stored.cells[0].outputs]
    assert kinds == ["stdout", "image/png", "stdout"], kinds  # the players' captions went with them
    assert stored.cells[0].outputs[-1]["text"] == N.AUDIO_NOTE.format(2)  # two players, one note
    assert N.figures(stored) == 1
    assert len(stored.cells[0].outputs[1]["data"]["image/png"]) < len(figure), (
        "the figure was not made smaller"
    )


@pytest.mark.slow
def test_muting_notebook_makes_and_compares_two_runs(monkeypatch, tmp_path):
    from tests.helpers import make_corpus

    corpus = make_corpus(tmp_path / "real")
    out = execute(
        "01_muting_loss.ipynb", monkeypatch, tmp_path, C2C_REAL_CORPUS=str(corpus), C2C_REAL_CLIPS="2"
    )
    assert "| clip | system | si_sdr_vs_input |" in out and "model + guard" in out, (
        "the real-music lesson is missing"
    )
    for net in ("spectral U-Net", "wave U-Net"):
        assert f"| {net}, waveform MAE |" in out and f"| {net}, energy-aware + MR-STFT |" in out
    assert "val/amplitude_retention" in out and "image/png" in out and "<audio" in out
    mae = A.run_config(tmp_path / "tiny" / "supervised_unet" / "mae")
    assert mae.system.supervised.l1 == 1 and mae.system.supervised.snr == 0 and mae.trainer.max_epochs == 1
    wave_mae = A.run_config(tmp_path / "tiny" / "supervised_unet" / "wave_mae")
    assert wave_mae.model.kind == "wave_unet" and wave_mae.system.supervised.l1 == 1
    assert A.run_config(tmp_path / "tiny" / "supervised_unet" / "wave_default").model.kind == "wave_unet"


@pytest.mark.slow
def test_leakage_notebook_shows_the_three_strategies_and_cross_panels(monkeypatch, tmp_path):
    out = execute("02_leakage_skips.ipynb", monkeypatch, tmp_path)
    for strategy in ("no_skip", "skip", "source_skip"):
        assert f"| {strategy} (pure_noise2noise/{strategy}) |" in out
    assert "val/leakage" in out and out.count("image/png") >= 2  # curves and the example pictures
    assert "logged no example pictures" not in out


@pytest.mark.slow
def test_chains_notebook_runs_the_analysis(monkeypatch, tmp_path):
    out = execute(
        "03_reconstruction_chains.ipynb",
        monkeypatch,
        tmp_path,
        C2C_CHAINS_CLIPS="2",
        C2C_CHAINS_SECONDS="1.0",
    )
    assert "STFT -> iSTFT" in out and "mel 128 -> inverse mel -> Griffin-Lim" in out and "<audio" in out
    assert (tmp_path / "tiny" / "chains" / "chains.csv").is_file()


@pytest.mark.slow
def test_chains_notebook_shows_a_saved_report(monkeypatch, tmp_path):
    from lightning_app.evaluation.chains import ChainSpec, build_chain
    from lightning_app.evaluation.pipeline import evaluate_chains

    spec = ChainSpec("magnitude", 256, 64, griffin_lim_iters=2)
    evaluate_chains(
        tmp_path / "saved", [("only magnitude", build_chain(spec))], clips=1, seconds=0.5, workers=1
    )
    out = execute(
        "03_reconstruction_chains.ipynb", monkeypatch, tmp_path, C2C_CHAINS_REPORT=str(tmp_path / "saved")
    )
    assert "| only magnitude |" in out and "its audio is not stored" in out
    assert not (tmp_path / "tiny" / "chains").exists(), "a saved report must not be recomputed"


@pytest.mark.slow
def test_compare_notebook_reads_given_runs(trained_run, monkeypatch, tmp_path):
    run_dir = trained_run["run_dir"]
    out = execute("04_compare_runs.ipynb", monkeypatch, tmp_path, C2C_RUNS=run_dir)
    assert f"| {A.run_label(run_dir)} | supervised_unet |" in out
    assert "the runs share every setting" in out and "image/png" in out
    assert not (tmp_path / "tiny").exists(), "given runs: nothing is trained"


# ----------------------------------------------------------------------------- analysis functions
def write_events(folder, values_by_step, tag="val/si_sdr"):
    writer = SummaryWriter(str(folder))
    for step, value in values_by_step.items():
        writer.add_scalar(tag, value, step)
    writer.close()


def test_find_runs_resolves_folders_globs_and_says_what_is_wrong(tmp_path):
    for name in ("a/version_0", "a/version_1", "b/stage/version_0"):
        write_events(tmp_path / name, {0: 1.0})
    (tmp_path / "empty").mkdir()
    assert A.find_runs(tmp_path / "a") == [tmp_path / "a/version_0", tmp_path / "a/version_1"]
    assert A.find_runs(f"{tmp_path}/*/stage", tmp_path / "a/version_1") == [
        tmp_path / "b/stage/version_0",
        tmp_path / "a/version_1",
    ]
    with pytest.raises(FileNotFoundError, match="no such run directory: .*nowhere"):
        A.find_runs(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="empty: no TensorBoard event files"):
        A.find_runs(tmp_path / "empty")


def test_scalars_of_a_resumed_run_keep_the_last_value_per_step(tmp_path):
    write_events(tmp_path / "run", {1: 1.0, 2: 2.0})
    write_events(tmp_path / "run", {2: 5.0, 3: 3.0})  # resumed: a second events file repeats step 2
    steps, values = A.read_scalars(tmp_path / "run")["val/si_sdr"]
    assert steps.tolist() == [1, 2, 3] and values.tolist() == [1.0, 5.0, 3.0]
    row = A.runs_table([tmp_path / "run"], ["val/si_sdr", "val/pesq"])[0]
    assert row["val/si_sdr"] == 3.0 and math.isnan(row["val/pesq"]) and row["steps"] == 3
    assert "| run | steps | val/si_sdr | val/pesq |" in A.markdown([row], ["steps", "val/si_sdr", "val/pesq"])
    with pytest.raises(ValueError, match="none of"):
        A.plot_curves({"run": tmp_path / "run"}, ["val/leakage"])
    write_events(tmp_path / "other", {1: 0.5})
    fig = A.plot_curves(
        {"a": tmp_path / "run", "b": tmp_path / "other"}, ["val/si_sdr"], separate=["val/si_sdr"]
    )
    assert [ax.get_title() for ax in fig.axes if ax.lines] == ["val/si_sdr: a", "val/si_sdr: b"]
    assert [len(ax.lines) for ax in fig.axes if ax.lines] == [1, 1]


def test_config_differences_lists_only_what_differs(tmp_path):
    from lightning_app import config as C

    for name, lr in (("x", 1e-3), ("y", 3e-3)):
        C.save(
            C.compose("supervised_unet", [f"optim.lr={lr}", f"run.version={name}"]),
            tmp_path / "e" / name / "config.yaml",
        )
    table = A.config_differences([tmp_path / "e" / "x", tmp_path / "e" / "y"])
    assert table.splitlines()[0] == "| setting | e/x | e/y |"
    assert table.splitlines()[2:] == [
        "| optim.lr | 0.001 | 0.003 |"
    ]  # run.version differs too, but is ignored
