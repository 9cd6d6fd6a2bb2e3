"""The torch-free restore engine: exports restore as their checkpoints do, through the same block pipeline,
and a model file that cannot be used is one line naming it, before any output exists."""

import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch

from lightning_app import denoise, export
from lightning_app.data.dsp import si_sdr_db
from lightning_app.restoring import networks
from lightning_app.restoring.engine import Restorer, RowsAtOnce
from lightning_app.restoring.export import SubPixelConvTranspose2d, export_model
from lightning_app.restoring.networks import BUNDLED_MODEL, ModelError, OnnxNetwork, open_network, sha256
from lightning_app.restoring.quantize import INT8_TOLERANCE_DB, difference_db
from lightning_app.systems.checkpoints import load_model
from tests.helpers import perturbed_checkpoint, write_tone_file


@pytest.mark.parametrize(
    "kind, stride, padding",
    [((4, 4), (2, 2), (1, 1)), ((4, 3), (2, 1), (1, 1)), ((4, 1), (4, 1), (0, 0)), ((3, 4), (1, 2), (1, 1))],
)
def test_a_sub_pixel_convolution_computes_what_the_transposed_one_does(kind, stride, padding):
    up = torch.nn.ConvTranspose2d(5, 7, kind, stride=stride, padding=padding)
    x = torch.randn(2, 5, 8, 9)
    rewritten = SubPixelConvTranspose2d(up)
    expected, got = up(x), rewritten(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # Each output phase multiplies by its own taps only: every weight of the transposed convolution once.
    taps = rewritten.conv.weight.numel()
    assert taps == up.weight.numel(), f"{taps} weights for {up.weight.numel()}: the phases share zero taps"


def test_a_transposed_convolution_that_does_not_scale_by_its_stride_is_not_rewritten():
    with pytest.raises(ValueError, match="scale by their stride"):
        SubPixelConvTranspose2d(torch.nn.ConvTranspose2d(5, 7, 3, stride=2, padding=1))


@pytest.mark.parametrize(
    "experiment, overrides",
    [("supervised_unet", ()), ("pure_noise2noise", ()), ("supervised_unet", ("model.kind=wave_unet",))],
    ids=["spectral U-Net", "cross-domain", "wave U-Net"],
)
def test_an_export_restores_as_its_checkpoint_does_through_the_same_pipeline(tmp_path, experiment, overrides):
    checkpoint = perturbed_checkpoint(tmp_path, experiment, *overrides)
    path, agreement = export_model(checkpoint, tmp_path / "exported")
    assert path == tmp_path / "exported" / f"{experiment}.onnx" and agreement >= 80.0
    exported, model = OnnxNetwork(path), load_model(checkpoint)
    assert exported.sample_rate == model.sample_rate and exported.kind == model.kind
    audio = (0.1 * np.random.default_rng(2).standard_normal((int(2.7 * 22050), 2))).astype(np.float32)
    settings = {"chunk_seconds": 0.5, "overlap_seconds": 0.1}
    by_torch = Restorer(model, **settings)(audio, 22050)
    by_onnx = Restorer(exported, **settings)(audio, 22050)
    assert si_sdr_db(by_torch, by_onnx) >= 60.0, "the two engines restore the same file differently"
    assert si_sdr_db(by_torch, audio) < 40.0, "the model did nothing: the comparison would prove nothing"


def test_the_bundled_export_is_the_bundled_checkpoints(tmp_path):
    onnx_path = BUNDLED_MODEL.with_suffix(".onnx")
    assert onnx_path.is_file(), "models/archive_fullband.onnx is missing: make export INT8=1"
    network = OnnxNetwork(onnx_path)
    assert network.settings["checkpoint_sha256"] == sha256(BUNDLED_MODEL), (
        "the bundled .onnx was exported from another checkpoint than the bundled .ckpt: make export INT8=1"
    )
    src = tmp_path / "take.wav"
    write_tone_file(src, 6.0, 44100, channels=2)
    audio, rate = sf.read(src)
    torch_out = Restorer(load_model(BUNDLED_MODEL))(audio, rate)
    onnx_out = Restorer(network)(audio, rate)
    # It ships as an int8 export (models/README.md), held to the same bound as its export check.
    assert network.precision == "int8", "the bundled export should be the int8 one: make export INT8=1"
    assert difference_db(audio, torch_out, onnx_out) >= INT8_TOLERANCE_DB


def test_auto_runs_the_export_beside_a_checkpoint_and_torch_without_one(tmp_path):
    checkpoint = perturbed_checkpoint(tmp_path, "supervised_unet")
    assert "torch" in open_network(checkpoint, "auto", "cpu").engine
    export_model(checkpoint, tmp_path)
    assert "ONNX Runtime" in open_network(checkpoint, "auto", "cpu").engine
    assert "torch" in open_network(checkpoint, "torch", "cpu").engine
    assert "ONNX Runtime" in open_network(checkpoint.with_suffix(".onnx"), "auto", "auto").engine


def _refusal(tmp_path, capsys, model, *extra) -> str:
    src = tmp_path / "take.wav"
    write_tone_file(src, 0.5, 16000)
    out = tmp_path / "out"
    code = denoise.main([str(src), "--checkpoint", str(model), "-o", str(out), "--no-progress", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert not out.exists(), "a refused model must leave nothing behind"
    return err[0]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exported")
    checkpoint = perturbed_checkpoint(tmp, "supervised_unet")
    return checkpoint, export_model(checkpoint, tmp)[0]


def _rewrite_settings(source, destination, change) -> None:
    graph = onnx.load(str(source))
    entry = next(p for p in graph.metadata_props if p.key == networks.SETTINGS_KEY)
    settings = json.loads(entry.value)
    change(settings)
    entry.value = json.dumps(settings)
    onnx.save(graph, str(destination))


def test_a_model_file_that_cannot_be_used_is_one_line_naming_it(tmp_path, capsys, exported):
    _, good = exported
    missing = tmp_path / "missing.onnx"
    assert _refusal(tmp_path, capsys, missing) == f"error: {missing}: model not found"
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    assert str(truncated) in _refusal(tmp_path, capsys, truncated)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    assert "the file is empty" in _refusal(tmp_path, capsys, empty)
    foreign = tmp_path / "foreign.onnx"
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph(
        [node], "g", [value("x", onnx.TensorProto.FLOAT, [1])], [value("y", onnx.TensorProto.FLOAT, [1])]
    )
    onnx.save(onnx.helper.make_model(graph), str(foreign))
    assert "not one exported by c2c-export" in _refusal(tmp_path, capsys, foreign)


def test_settings_that_do_not_match_the_graph_are_refused(tmp_path, capsys, exported):
    _, good = exported
    edited = tmp_path / "edited.onnx"
    _rewrite_settings(good, edited, lambda s: s.update(n_fft=s["n_fft"] * 2))
    line = _refusal(tmp_path, capsys, edited)
    assert str(edited) in line and "need features" in line
    newer = tmp_path / "newer.onnx"
    _rewrite_settings(good, newer, lambda s: s.update(format=99))
    assert "format 99" in _refusal(tmp_path, capsys, newer)


def test_a_stale_export_beside_a_checkpoint_is_refused(tmp_path, capsys, exported):
    checkpoint, good = exported
    (tmp_path / "model.ckpt").write_bytes(checkpoint.read_bytes() + b"")
    _rewrite_settings(good, tmp_path / "model.onnx", lambda s: s.update(checkpoint_sha256="0" * 64))
    line = _refusal(tmp_path, capsys, tmp_path / "model.ckpt", "--engine", "onnx")
    assert "exported from another version of model.ckpt" in line


def test_an_export_without_onnx_beside_a_checkpoint_says_how_to_make_one(tmp_path, capsys, exported):
    checkpoint, _ = exported
    lone = tmp_path / "lone.ckpt"
    lone.write_bytes(checkpoint.read_bytes())
    assert "c2c-export" in _refusal(tmp_path, capsys, lone, "--engine", "onnx")
    with pytest.raises(ModelError, match="not found"):
        OnnxNetwork(tmp_path / "nothing.onnx")


def test_the_export_command_writes_a_checked_file_and_refuses_what_is_not_a_checkpoint(tmp_path, capsys):
    checkpoint = perturbed_checkpoint(tmp_path, "supervised_unet")
    assert export.main([str(checkpoint), "-o", str(tmp_path / "out")]) == 0
    assert "dB SI-SDR" in capsys.readouterr().out and (tmp_path / "out" / "supervised_unet.onnx").is_file()
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_bytes(b"not a checkpoint")
    assert export.main([str(bogus), "-o", str(tmp_path / "out2")]) == 2
    assert str(bogus) in capsys.readouterr().err and not (tmp_path / "out2").exists()


@pytest.mark.slow
@pytest.mark.parametrize("given", [True, False], ids=["an export given", "the bundled model, engine auto"])
def test_restoring_with_an_export_imports_no_torch(tmp_path, exported, given):
    """torch alone costs a restore 645 MB: choosing the engine where there is no GPU must not import it."""
    _, path = exported
    src = tmp_path / "take.wav"
    write_tone_file(src, 0.5, 22050)
    code = (
        "import sys; from lightning_app import denoise; status = denoise.main(sys.argv[1:]); "
        "print('IMPORTED', sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchaudio', "
        "'lightning'})); sys.exit(status)"
    )
    args = [str(src), "-o", str(tmp_path / "out"), "--no-progress"]
    args += ["--checkpoint", str(path)] if given else []
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    if not given and networks.gpu_available():
        pytest.skip("with a GPU, auto runs the bundled model in torch")
    assert "IMPORTED []" in done.stdout, done.stdout
    assert (tmp_path / "out" / "take.wav").is_file()


@pytest.mark.parametrize("channels", [3, 1])
def test_workers_restore_exactly_what_one_thread_does(exported, channels):
    """Three channels run one per thread; one channel runs its batches' two rows at once."""
    _, path = exported
    network = OnnxNetwork(path, threads=1)
    audio = (0.1 * np.random.default_rng(4).standard_normal((int(1.5 * 22050), channels))).astype(np.float32)
    settings = {"chunk_seconds": 0.5, "overlap_seconds": 0.1, "batch_size": 2}
    one = Restorer(network, workers=1, **settings)
    three = Restorer(network, workers=3, **settings)
    one.reset_guard(), three.reset_guard()
    np.testing.assert_array_equal(one(audio, 22050), three(audio, 22050))
    assert one.guard_share() == pytest.approx(three.guard_share(), rel=1e-12), "the guard's sums lost updates"


def test_rows_at_once_runs_a_batch_s_rows_on_separate_threads():
    meeting = threading.Barrier(2, timeout=10)  # broken unless both rows are in the network together

    class MeetsItsOtherRow:
        def enhance(self, batch):
            meeting.wait()
            return batch * 0.5

    batch = np.arange(6, dtype=np.float32).reshape(2, 3)
    with ThreadPoolExecutor(2) as pool:
        np.testing.assert_array_equal(RowsAtOnce(MeetsItsOtherRow(), pool).enhance(batch), batch * 0.5)


@pytest.mark.parametrize(
    ("cores", "workers", "threads"), [(2, 2, "1 thread"), (12, 6, "2 threads"), (64, 8, "8 threads")]
)
def test_onnx_runtime_runs_calls_at_once_that_share_the_cores_by_default(
    monkeypatch, cores, workers, threads
):
    from lightning_app.restoring import batch

    monkeypatch.setattr(batch, "cpu_cores", lambda: cores)
    monkeypatch.setattr(networks, "cpu_cores", lambda: cores)
    restorer = batch.build_restorer(denoise.parse_args(["take.wav", "-o", "out", "--engine", "onnx"]))
    assert (restorer.workers, restorer.batch_size) == (workers, workers), "a mono batch fills the workers"
    # the bundled model ships as an int8 export, and the engine says so
    assert restorer.model.engine == f"ONNX Runtime on the CPU ({threads}, int8)"
    assert batch.describe_engine(restorer).endswith(f"({threads}, int8), {workers} calls at once")
    if cores == 2:
        alone = batch.build_restorer(
            denoise.parse_args(["take.wav", "-o", "out", "--engine", "onnx", "--workers", "1"])
        )
        assert (alone.workers, alone.batch_size) == (1, 1)
        assert batch.describe_engine(alone) == "ONNX Runtime on the CPU (2 threads, int8)"


class _CountsCallsAtOnce:
    """A stand-in network that runs a batch a row at a time, as ONNX Runtime does; counts calls at once."""

    sample_rate, engine, batch_size, runs_rows_alone = 8000, "stand-in", 1, True

    def __init__(self):
        self.running = self.most = 0
        self.lock = threading.Lock()

    def enhance(self, batch):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.03)
        with self.lock:
            self.running -= 1
        return np.asarray(batch, np.float32) * 0.5


@pytest.mark.parametrize(("channels", "rows_alone", "most"), [(2, True, 4), (1, True, 4), (2, False, 2)])
def test_every_worker_runs_a_call_for_stereo_too_and_batched_networks_keep_their_batches(
    channels, rows_alone, most
):
    network = _CountsCallsAtOnce()
    network.runs_rows_alone = rows_alone
    audio = np.random.default_rng(0).standard_normal((8 * 8000, channels)).astype(np.float32)
    restorer = Restorer(network, guard=False, workers=4, batch_size=4, chunk_seconds=0.5, overlap_seconds=0.1)
    np.testing.assert_allclose(restorer(audio, 8000), 0.5 * audio, atol=1e-6)
    assert network.most == most, f"{network.most} calls at once with 4 workers and {channels} channel(s)"


class _RecordsBatches(_CountsCallsAtOnce):
    def __init__(self):
        super().__init__()
        self.rows = []

    def enhance(self, batch):
        self.rows.append(len(batch))
        return super().enhance(batch)


@pytest.mark.parametrize(("rows_alone", "most"), [(True, 1), (False, 4)])
def test_a_network_that_runs_rows_alone_gets_only_the_rows_that_run_at_once(rows_alone, most):
    """Stereo on 2 workers runs one chunk per channel at a time: a batch of four would run its rows one after
    another anyway, with the guard's arrays four times as large. A batched network keeps its batches."""
    network = _RecordsBatches()
    network.runs_rows_alone = rows_alone
    audio = np.random.default_rng(1).standard_normal((4 * 8000, 2)).astype(np.float32)
    restorer = Restorer(network, guard=False, workers=2, batch_size=4, chunk_seconds=0.5, overlap_seconds=0.1)
    np.testing.assert_allclose(restorer(audio, 8000), 0.5 * audio, atol=1e-6)
    assert max(network.rows) == most, f"rows per call {network.rows}"
