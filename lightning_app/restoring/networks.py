"""The network call of the restore engine, the one step its two engines do their own way.

The block pipeline (restoring/engine.py) hands a network a batch of equal-length chunks at the model's rate,
(batch, samples) float32, and takes back the denoised chunks. Two engines run it:

- ``OnnxNetwork``: a model exported by ``c2c-export`` (restoring/export.py), run by ONNX Runtime on the CPU.
  It needs numpy, scipy and onnxruntime only, no torch: the light install restores with it. A spectral
  model's STFT, features and resynthesis are fixed arithmetic done here in numpy; the exported graph holds
  its learned part (features -> mask). A waveform model's graph is the whole network.
- ``TorchNetwork`` (restoring/torch_network.py): a checkpoint's network in torch, on a CPU or a GPU.

``open_network`` picks the engine (``--engine auto|onnx|torch``) and reads the model, with one clear line
naming the file for anything that is not a usable model, before any output is created.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from lightning_app import config as C
from lightning_app.data.dsp import resynthesis, spectrogram

#: the metadata key of an exported model that holds its settings (JSON), and the format it is written in
SETTINGS_KEY = "c2c_settings"
FORMAT = 1
ENGINES = ("auto", "onnx", "torch")
#: the archive model that ships with the suite, as a checkpoint and exported beside it (models/README.md)
BUNDLED_MODEL = C.folder("models") / "archive_fullband.ckpt"


class ModelError(ValueError):
    """A model file that cannot be used; the message names the file and what is wrong."""


class Network(Protocol):
    sample_rate: int
    engine: str  # what runs it, for the log: "ONNX Runtime on the CPU", "torch on cuda:0"

    def enhance(self, batch: np.ndarray) -> np.ndarray:
        """(batch, samples) float32 chunks -> the denoised chunks, same shape, float32."""
        ...


def as_network(model) -> Network:
    """A network the engine can run: a torch module (a checkpoint's Denoiser, a system) is wrapped for the
    torch engine on its own device; anything else already is one."""
    if hasattr(model, "parameters") and not hasattr(model, "engine"):
        from lightning_app.restoring.torch_network import TorchNetwork  # the light install has no torch

        return TorchNetwork(model)
    return model


def bundled_model() -> Path:
    """The shipped archive model, or one line saying it is not there (a partial checkout)."""
    if not BUNDLED_MODEL.is_file():
        raise ModelError(
            f"{BUNDLED_MODEL}: the bundled archive model is missing from this checkout; "
            "give a model with --checkpoint"
        )
    return BUNDLED_MODEL


def check_model(path: Path) -> None:
    """A model file is usable (ModelError or CheckpointError otherwise): an export is opened, a checkpoint
    read (which needs torch)."""
    if path.suffix.lower() == ".onnx":
        OnnxNetwork(path, threads=1)
    else:
        from lightning_app.systems.checkpoints import read_checkpoint

        read_checkpoint(path)


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- the ONNX engine
def cpu_cores() -> int:
    """The cores this process may use (Slurm, taskset), not the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _threads(count: int) -> str:
    return "1 thread" if count == 1 else f"{count} threads"


def _session(path: Path, threads: int | None):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError(f"{path}: an exported model needs onnxruntime (pip install onnxruntime)") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or cpu_cores()
    options.inter_op_num_threads = 1
    # A memory pattern lays out every activation of a run in one block planned ahead; without it the arena
    # reuses freed activations as the run goes: 43 MB less peak for the bundled model, at the same speed.
    options.enable_mem_pattern = False
    options.log_severity_level = 3  # its warnings about unused initialisers are not the user's business
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime's errors name no file and span many lines
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = (
            "truncated or not an ONNX model" if "protobuf" in first.lower() else "not a usable ONNX model"
        )
        raise ModelError(f"{path}: {reason} ({first[:160]})") from None


def _settings(path: Path, session) -> dict:
    raw = session.get_modelmeta().custom_metadata_map.get(SETTINGS_KEY)
    if raw is None:
        raise ModelError(
            f"{path}: an ONNX model, but not one exported by c2c-export (it has no {SETTINGS_KEY}); "
            "export a checkpoint with `c2c-export CKPT -o DIR`"
        )
    try:
        settings = json.loads(raw)
    except json.JSONDecodeError:
        raise ModelError(f"{path}: its {SETTINGS_KEY} are not valid JSON (the file was edited?)") from None
    if not isinstance(settings, dict) or settings.get("format") != FORMAT:
        got = settings.get("format") if isinstance(settings, dict) else None
        raise ModelError(
            f"{path}: exported in format {got!r}, this suite reads format {FORMAT}; export it again with "
            "this version's c2c-export"
        )
    needed = ("sample_rate", "front_end")
    needed += ("n_fft", "hop", "time_factor", "compress") if settings["front_end"] == "spectral" else ()
    if missing := [k for k in needed if k not in settings]:
        raise ModelError(f"{path}: its settings lack {', '.join(missing)}; export it again")
    return settings


def _check_graph(path: Path, session, settings: dict) -> None:
    """The graph's inputs and outputs are what its settings describe (a mismatch is an edited or mixed-up
    file, which would fail deep inside the first block or, worse, restore wrongly)."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if settings["front_end"] == "spectral":
        bins = settings["n_fft"] // 2
        want = ("features", 3, bins), ("mask", 2, bins)
        got = [(io.name, *io.shape[1:3]) for io in (*inputs, *outputs)]
        # a dimension the graph leaves symbolic (an output's, after reshapes) cannot disagree
        agree = all(
            len(g) == 3 and all(a == b or not isinstance(a, int) for a, b in zip(g, w, strict=True))
            for g, w in zip(got, want, strict=True)
        )
        if len(inputs) != 1 or len(outputs) != 1 or not agree:
            raise ModelError(
                f"{path}: its graph takes {got[: len(inputs)]} and gives {got[len(inputs) :]}, but its "
                f"settings (n_fft {settings['n_fft']}) need features (3 x {bins} bins) -> mask (2 x {bins})"
            )
    elif settings["front_end"] == "waveform":
        if [io.name for io in (*inputs, *outputs)] != ["wave", "denoised"]:
            raise ModelError(f"{path}: its graph does not take a waveform to a waveform, as its settings say")
    else:
        raise ModelError(f"{path}: unknown front end {settings['front_end']!r} in its settings")


class OnnxNetwork:
    """An exported model, run by ONNX Runtime on the CPU (``threads``: default every core this process may
    use)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self.path = Path(path)
        if self.path.is_dir():
            found = sorted(self.path.glob("*.onnx"))
            hint = f", e.g. {found[0]}" if found else ""
            raise ModelError(f"{self.path}: a folder, not a model file; give a .onnx file{hint}")
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model not found")
        if self.path.stat().st_size == 0:
            raise ModelError(f"{self.path}: the file is empty (an interrupted copy or export?)")
        self.session = _session(self.path, threads)
        self.settings = _settings(self.path, self.session)
        _check_graph(self.path, self.session, self.settings)
        self.sample_rate = int(self.settings["sample_rate"])
        self.kind = self.settings.get("kind", "")
        self.card = self.settings.get("card", {})
        self.precision = self.settings.get("precision", "float32")
        threads = _threads(self.session.get_session_options().intra_op_num_threads)
        self.engine = f"ONNX Runtime on the CPU ({threads}{', int8' if self.precision == 'int8' else ''})"
        # One chunk per call: as fast per chunk as two on a CPU, and ONNX Runtime's arena (which keeps the
        # largest call's activations) stays at about half the size. A larger batch is run a row at a time, so
        # the restore engine may run its rows in threads of their own with the same results.
        self.batch_size = 1
        self.runs_rows_alone = True

    def valid_length(self, samples: int) -> int:
        """Smallest length >= samples whose frame count the network's time strides divide (as the network's
        own padding does)."""
        s = self.settings
        if s["front_end"] == "waveform":
            stride = s["total_stride"]
            return max(-(-samples // stride), 2) * stride
        frames = -(-samples // s["hop"]) + 1
        frames = -(-frames // s["time_factor"]) * s["time_factor"]
        return (frames - 1) * s["hop"]

    def enhance(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32)
        if len(batch) > 1:
            return np.stack([self.enhance(row[None])[0] for row in batch])
        n = batch.shape[-1]
        padded = np.pad(batch, ((0, 0), (0, self.valid_length(n) - n)))
        if self.settings["front_end"] == "waveform":
            (out,) = self.session.run(None, {"wave": padded[:, None]})
            return np.ascontiguousarray(out[:, 0, :n], dtype=np.float32)
        s = self.settings
        spec = spectrogram(padded, s["n_fft"], s["hop"])
        (mask,) = self.session.run(None, {"features": spectral_features(spec, s["compress"])})
        complex_mask = np.empty(spec.shape, dtype=np.complex64)
        complex_mask.real[:, :-1], complex_mask.imag[:, :-1] = mask[:, 0], mask[:, 1]
        complex_mask[:, -1] = complex_mask[:, -2]  # the top bin's mask serves Nyquist too
        return resynthesis(spec * complex_mask, s["n_fft"], s["hop"], padded.shape[-1])[..., :n]


def spectral_features(spec: np.ndarray, compress: float) -> np.ndarray:
    """(batch, bins, frames) complex spectrogram -> (batch, 3, bins - 1, frames) float32: power-law compressed
    magnitude and compressed real/imaginary parts, the Nyquist bin dropped (nets/unet.py's ``features``)."""
    spec = spec[:, :-1]
    magnitude = np.maximum(np.abs(spec), np.float32(1e-8))
    compressed = magnitude ** np.float32(compress)
    scale = compressed / magnitude
    return np.stack([compressed, scale * spec.real, scale * spec.imag], axis=1).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------- choosing an engine
def exported_beside(checkpoint: Path) -> Path | None:
    """The export of a checkpoint that sits beside it (NAME.onnx for NAME.ckpt), if there is one."""
    candidate = checkpoint.with_suffix(".onnx")
    return candidate if candidate.is_file() else None


def check_exported_from(onnx_path: Path, network: OnnxNetwork, checkpoint: Path) -> None:
    """An export beside a checkpoint must be that checkpoint's (a retrained .ckpt beside an old .onnx would
    otherwise restore with the old weights)."""
    stamped = network.settings.get("checkpoint_sha256")
    if stamped != sha256(checkpoint):
        raise ModelError(
            f"{onnx_path}: exported from another version of {checkpoint.name} than the one beside it; "
            f"export it again (c2c-export {checkpoint} -o {onnx_path.parent}) or give --engine torch"
        )


def torch_available() -> bool:
    """Whether torch is installed (found, not imported: its import alone costs 645 MB)."""
    return importlib.util.find_spec("torch") is not None


def gpu_available() -> bool:
    """A CUDA GPU torch can use. torch is imported only where the NVIDIA driver lists a GPU, so that choosing
    an engine on a machine without one costs nothing."""
    gpus = Path("/proc/driver/nvidia/gpus")
    if not (gpus.is_dir() and any(gpus.iterdir())) or not torch_available():
        return False
    import torch

    return torch.cuda.is_available()


def choose_engine(model: Path, engine: str, device: str) -> str:
    """``auto``: ONNX Runtime on the CPU when an exported model is there (given, or beside the checkpoint) and
    no GPU is asked for or found; torch otherwise."""
    if engine != "auto":
        return engine
    if model.suffix.lower() == ".onnx":
        return "onnx"
    if device == "cuda" or (device == "auto" and gpu_available()):
        return "torch"
    return "onnx" if exported_beside(model) or not torch_available() else "torch"


def open_network(
    model: str | os.PathLike, engine: str = "auto", device: str = "auto", threads: int | None = None
):
    """The network of ``model`` (a .ckpt, or a .onnx from c2c-export) on the chosen engine; ModelError (a
    ValueError) with one line naming the file when it cannot be used."""
    model = Path(model)
    if engine not in ENGINES:
        raise ValueError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    chosen = choose_engine(model, engine, device)
    if chosen == "onnx":
        if device == "cuda":
            raise ValueError("--engine onnx runs on the CPU; --device cuda needs --engine torch")
        if model.suffix.lower() == ".onnx":
            return OnnxNetwork(model, threads)
        onnx_path = exported_beside(model)
        if onnx_path is None:
            raise ModelError(
                f"{model}: no exported model beside it ({model.with_suffix('.onnx').name}); export it with "
                f"`c2c-export {model} -o {model.parent}`, or give --engine torch"
                + (
                    ""
                    if torch_available()
                    else " (which needs the full install: pip install c2c-denoise[train])"
                )
            )
        network = OnnxNetwork(onnx_path, threads)
        check_exported_from(onnx_path, network, model)
        return network
    if model.suffix.lower() == ".onnx":
        raise ValueError(f"{model}: an exported model runs on --engine onnx (or auto), not torch")
    if not torch_available():
        raise ModelError(
            f"{model}: --engine torch needs torch, which this light install does not have; "
            "restore with the exported model (--engine onnx) or install c2c-denoise[train]"
        )
    from lightning_app.restoring.torch_network import load_torch_network

    return load_torch_network(model, device, threads)
