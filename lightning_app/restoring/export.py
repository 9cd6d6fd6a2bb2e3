"""Export a checkpoint to one ONNX file the torch-free engine restores with (restoring/networks.py).

The file holds the network's learned part and, in its metadata (``c2c_settings``, JSON), all the engine needs
besides: sample rate, front end (STFT size, hop, time factor, compression), the system kind, the model card,
and the SHA-256 of the checkpoint it came from. A spectral model's graph maps features to its mask (the STFT
around it is fixed arithmetic, done in numpy); a waveform model's graph is the whole network. Every export
is checked before it gets its name: the exported graph and the checkpoint's network restore the same chunks
to within ``TOLERANCE_DB``, at two lengths (the time axis is dynamic).
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lightning_app.data.dsp import si_sdr_db
from lightning_app.nets.unet import SpectralMaskNet
from lightning_app.nets.wave_unet import WaveUNet
from lightning_app.restoring.networks import FORMAT, SETTINGS_KEY, ModelError, OnnxNetwork, sha256
from lightning_app.systems.checkpoints import denoiser_from_checkpoint, read_checkpoint

#: the ONNX operator set: 17 is what the suite's networks export to and every current runtime runs
OPSET = 17
#: how close (SI-SDR of the ONNX output against torch's, dB) an export must restore its check chunks
TOLERANCE_DB = 80.0


def _phase_taps(kernel: int, stride: int, padding: int) -> list[list[tuple[int, int]]]:
    """A transposed convolution along one axis, as ``stride`` ordinary ones (one per output phase r): output
    ``stride * m + r`` is the sum over input offsets j of ``x[m + j] * w[r + padding - stride * j]``.
    Returns per phase [(j, kernel index)], j consecutive."""
    return [
        [
            (j, r + padding - stride * j)
            for j in range(-kernel, kernel + 1)
            if 0 <= r + padding - stride * j < kernel
        ]
        for r in range(stride)
    ]


class SubPixelConvTranspose2d(nn.Module):
    """A ConvTranspose2d rewritten as one ordinary Conv2d over the output phases, then a pixel shuffle: the
    same numbers, but ONNX Runtime runs ordinary convolutions far faster than transposed ones on a CPU.

    Each phase has a window of its own taps only (2 x 2 of a 4 x 4 kernel at stride 2), at an input offset
    of its own. One convolution computes every phase's window at every offset that any phase needs, and each
    phase's output is its slice of that. A window over every phase's taps at one offset would multiply by
    zeros for the other phases (2.25 times the work at stride 2 x 2), and a convolution per phase with a Pad
    before it keeps ONNX Runtime converting layouts (its blocked layout takes a convolution's own padding,
    not a Pad)."""

    def __init__(self, up: nn.ConvTranspose2d):
        super().__init__()
        if up.groups != 1 or up.dilation != (1, 1) or up.output_padding != (0, 0):
            raise ValueError("only plain transposed convolutions are rewritten")
        kernel = up.weight.shape[2:]
        if any(k - 2 * p != s for k, s, p in zip(kernel, up.stride, up.padding, strict=True)):
            raise ValueError("only transposed convolutions that scale by their stride exactly are rewritten")
        c_in, c_out = up.weight.shape[:2]
        f_phases, t_phases = (
            _phase_taps(k, s, p) for k, s, p in zip(kernel, up.stride, up.padding, strict=True)
        )
        # Per axis: the window (the most taps of a phase), each phase's first input offset, and the padding
        # that lets every phase's window start where it must for every output sample.
        windows = [max(len(taps) for taps in phases) for phases in (f_phases, t_phases)]
        firsts = [[taps[0][0] for taps in phases] for phases in (f_phases, t_phases)]
        pads = [max(-min(a), max(a) + n - 1) for a, n in zip(firsts, windows, strict=True)]
        self.strides, self.c_out = up.stride, c_out
        # Where each phase's slice starts in the padded convolution's output, per axis.
        self.starts = [[a + p for a in axis] for axis, p in zip(firsts, pads, strict=True)]
        w = up.weight.detach().permute(1, 0, 2, 3)  # (c_out, c_in, kf, kt)
        weight = torch.zeros(len(f_phases), len(t_phases), c_out, c_in, *windows)
        for rf, f_taps in enumerate(f_phases):  # phases in pixel-shuffle order: frequency major, time minor
            for rt, t_taps in enumerate(t_phases):
                for jf, kf in f_taps:
                    for jt, kt in t_taps:
                        weight[rf, rt, :, :, jf - firsts[0][rf], jt - firsts[1][rt]] = w[:, :, kf, kt]
        phases = len(f_phases) * len(t_phases)
        self.conv = nn.Conv2d(c_in, phases * c_out, tuple(windows), padding=tuple(pads))
        with torch.no_grad():
            self.conv.weight.copy_(weight.flatten(0, 2))
            bias = up.bias.detach() if up.bias is not None else torch.zeros(c_out)
            self.conv.bias.copy_(bias.repeat(phases))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        (sf, st), (b, _, f, t), c = self.strides, x.shape, self.c_out
        # Each phase's slice, in the convolution's channel order, stacked as (b, c, sf * st, f, t).
        starts = [(a, z) for a in self.starts[0] for z in self.starts[1]]
        y = torch.stack(
            [y[:, i * c : (i + 1) * c, a : a + f, z : z + t] for i, (a, z) in enumerate(starts)], 2
        )
        # Two moves of one axis each: the time phases in beside each sample, then the frequency phases in
        # between whole rows. ONNX Runtime does these far faster than DepthToSpace (3.9 against 2.3 ms for
        # the bundled model's largest) or one 6-D transpose (8.1 ms).
        if st > 1:
            y = y.reshape(b, c, sf, st, f, t).permute(0, 1, 2, 4, 5, 3).reshape(b, c, sf, f, t * st)
        return y.transpose(2, 3).reshape(b, c, f * sf, t * st)


def _with_sub_pixel_convolutions(net: nn.Module) -> nn.Module:
    """A copy of ``net`` with every 2-D transposed convolution rewritten (``SubPixelConvTranspose2d``)."""
    net = copy.deepcopy(net)
    for parent in list(net.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.ConvTranspose2d):
                setattr(parent, name, SubPixelConvTranspose2d(child))
    return net


class _MaskCore(nn.Module):
    """A spectral network's learned part: features -> mask."""

    def __init__(self, net: SpectralMaskNet):
        super().__init__()
        self.net = net

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net.inference_mask(features)


class _WaveCore(nn.Module):
    """A waveform network on inputs of a valid length: (batch, 1, samples) -> the same."""

    def __init__(self, net: WaveUNet):
        super().__init__()
        self.net = net

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.net(wave)


def _graph(net: nn.Module, settings: dict) -> tuple[nn.Module, tuple, list[str], list[str], dict]:
    """(module, example inputs, input names, output names, dynamic axes) for ``net``; fills ``settings``."""
    if isinstance(net, SpectralMaskNet):
        settings.update(
            front_end="spectral",
            n_fft=net.stft.n_fft,
            hop=net.stft.hop,
            time_factor=net.time_factor,
            compress=float(net.compress),
            mask_max=float(net.mask_max),
        )
        _, features = net.analyse(torch.randn(1, net.valid_length(settings["sample_rate"])) * 0.03)
        axes = {0: "batch", 3: "frames"}
        return (
            _MaskCore(_with_sub_pixel_convolutions(net)),
            (features,),
            ["features"],
            ["mask"],
            {"features": axes, "mask": axes},
        )
    if isinstance(net, WaveUNet):
        settings.update(front_end="waveform", total_stride=int(net.total_stride))
        example = torch.randn(1, 1, net.valid_length(settings["sample_rate"])) * 0.03
        axes = {0: "batch", 2: "samples"}
        return _WaveCore(net), (example,), ["wave"], ["denoised"], {"wave": axes, "denoised": axes}
    raise ModelError(f"a {type(net).__name__} has no ONNX export yet (spectral and waveform U-Nets do)")


def check_export(path: Path, model: nn.Module) -> float:
    """SI-SDR (dB) of the exported model's output against the checkpoint network's on noise chunks of two
    lengths; a ModelError below ``TOLERANCE_DB``."""
    network = OnnxNetwork(path, threads=1)
    rng = np.random.default_rng(0)
    worst = np.inf
    for seconds in (1.0, 2.3):
        chunks = (0.05 * rng.standard_normal((2, int(seconds * network.sample_rate)))).astype(np.float32)
        with torch.inference_mode():
            expected = model.enhance(torch.from_numpy(chunks)[:, None])[:, 0].numpy()
        worst = min(worst, si_sdr_db(expected, network.enhance(chunks)))
    if worst < TOLERANCE_DB:
        raise ModelError(
            f"{path}: the export restores differently from its checkpoint ({worst:.1f} dB SI-SDR against "
            f"torch's output, {TOLERANCE_DB:.0f} needed); not kept"
        )
    return worst


def export_model(
    checkpoint: str | os.PathLike,
    destination: str | os.PathLike,
    int8: bool = False,
    calibration: str = "archive_fullband",
) -> tuple[Path, float]:
    """``checkpoint`` -> ``destination`` (a .onnx file, or a folder that gets NAME.onnx); returns (path, the
    check's SI-SDR in dB). The file appears only once it is written and checked. ``int8``: its convolutions
    quantised (restoring/quantize.py), their activation ranges calibrated on the ``calibration``
    experiment's procedural training clips."""
    checkpoint, destination = Path(checkpoint), Path(destination)
    ckpt = read_checkpoint(checkpoint)
    model = denoiser_from_checkpoint(ckpt, checkpoint).eval()
    if destination.suffix.lower() != ".onnx":
        destination = destination / f"{checkpoint.stem}.onnx"
    if destination.resolve() == checkpoint.resolve():
        raise ModelError(f"{destination}: would overwrite the checkpoint")
    settings = {
        "format": FORMAT,
        "sample_rate": model.sample_rate,
        "kind": model.kind,
        "net": ckpt["hyper_parameters"]["model"]["kind"],
        "checkpoint": checkpoint.name,
        "checkpoint_sha256": sha256(checkpoint),
        "epoch": ckpt.get("epoch"),
        "global_step": ckpt.get("global_step"),
        "card": model.card,
    }
    module, example, inputs, outputs, axes = _graph(model.net, settings)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if int8 and settings["front_end"] != "spectral":  # refused before any exporting
        raise ModelError(f"{checkpoint}: int8 export is for spectral models; export this one without --int8")
    partial = destination.with_name(f".{destination.name}.partial")
    quantized = destination.with_name(f".{destination.name}.int8.partial")
    try:
        with warnings.catch_warnings():
            # The tracer's notes on Python values it fixed (shapes, lengths) and the exporter's deprecation
            # notice: the check below restores at two lengths, which is what those notes are about.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(),
                example,
                str(partial),
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
        _stamp(partial, settings)
        agreement = check_export(partial, model)
        if int8:
            from lightning_app.restoring.quantize import check_int8, quantize_export

            settings.update(precision="int8", quantization=quantize_export(partial, quantized, calibration))
            _stamp(quantized, settings)
            agreement = check_int8(quantized, partial, calibration)
            quantized.replace(partial)
        partial.replace(destination)  # a complete, checked file or none
    finally:
        partial.unlink(missing_ok=True)
        quantized.unlink(missing_ok=True)
    return destination, agreement


def _stamp(path: Path, settings: dict) -> None:
    import onnx

    graph = onnx.load(str(path))
    # a quantised copy carries its float original's settings: replaced, not added beside
    kept = [entry for entry in graph.metadata_props if entry.key != SETTINGS_KEY]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    entry = graph.metadata_props.add()
    entry.key, entry.value = SETTINGS_KEY, json.dumps(settings, default=str, sort_keys=True)
    graph.producer_name = "c2c-denoise"
    onnx.save(graph, str(path))
