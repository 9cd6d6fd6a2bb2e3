"""Int8 exports: a spectral model's convolutions in 8-bit integers, for a faster restore on a CPU.

``c2c-export --int8`` writes the float export first and checks it, then quantises it here. ONNX Runtime runs
an int8 convolution in about half the time of a float one on a CPU with 8-bit dot products (VNNI on x86,
the dot-product instructions on ARM); the bundled model's network then takes 0.6 times its float time, and
restoring stereo about three quarters (models/README.md has the figures). What it gives up is measured, not
assumed: the int8 file is checked against the float export, which is checked against the checkpoint (at
``INT8_TOLERANCE_DB``, ``check_int8``), and the card holds the int8 model's real and procedural test-set
figures.

How, and why so:

- Weights per output channel, symmetric int8 over 7 bits of range. Without VNNI an x86 CPU adds pairs of
  8-bit products in 16 bits, which full-range weights can overflow; 7-bit weights cannot, at no measurable
  cost in agreement (both tried on 10 real val clips).
- Activations per tensor, uint8, their ranges calibrated on what restoring feeds the network: procedural
  clips of an experiment's training stream (no corpus or download needed), normalised and cut into chunks
  by the restore engine itself, through the float export. Each range leaves out the rarest 0.001 % of values
  (ONNX Runtime's percentile calibration): the extremes a full min-max range keeps make every step coarser.
  On the real val split that kept clean music at 46.7 dB SI-SDR (median of 24 clips) where min-max ranges
  gave 43.4 and the float export 46.1, and the check below rose from 26 to 33 dB.
- Only convolutions are quantised, and not the first (it reads the compressed spectrum, whose quiet bins
  an 8-bit range would round away) nor the last (it gives the mask, which a clean input needs at 1 to well
  under a percent); in a trial, keeping those two float raised the clean-music median of 10 real val clips
  from 43.7 to 44.5 dB at the same speed. Normalisation, GELU, concatenation and the shuffles stay float.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np

from lightning_app.data.datasets import TRAIN_STREAM, VAL_STREAM
from lightning_app.evaluation.test_sets import synthetic_test_set
from lightning_app.restoring.engine import Restorer
from lightning_app.restoring.networks import ModelError, OnnxNetwork

#: how far below the input (dB) the int8 export's restore must differ from the float export's on every check
#: clip. The bundled model's worst is 33 dB (26 dB with min-max ranges, on a clip at -4 dB input SNR where
#: that int8 restore scored 0.4 dB SI-SDR below the float one). The bound leaves 13 dB of margin: it is there
#: to catch a quantisation gone wrong (a saturating CPU, a calibration on the wrong level), not to grade a
#: good one.
INT8_TOLERANCE_DB = 20.0
#: the check set: procedural clips of the calibration experiment's validation stream (not the calibration's)
CHECK_CLIPS = 8
#: the calibration set: this many procedural clips (half music, half speech where the experiment mixes both)
CALIBRATION_CLIPS = 24
CALIBRATION_SECONDS = 5.0
#: how each activation's range is set from the calibration data (onnxruntime.quantization.CalibrationMethod)
CALIBRATION_METHOD = "Percentile"


class _RecordingSession:
    """An ONNX Runtime session that keeps every input it is run on (the calibration data)."""

    def __init__(self, session):
        self.session = session
        self.feeds: list[dict] = []

    def run(self, outputs, feed):
        self.feeds.append(feed)
        return self.session.run(outputs, feed)

    def __getattr__(self, name: str):
        return getattr(self.session, name)


def _procedural_clips(experiment: str, rate: int, clips: int, stream: int) -> list[np.ndarray]:
    found, _ = synthetic_test_set(
        clips, CALIBRATION_SECONDS, [f"data.sample_rate={rate}"], experiment, stream=stream
    )
    return [np.asarray(clip["noisy"], dtype=np.float32)[:, None] for clip in found]


def calibration_feeds(network: OnnxNetwork, experiment: str) -> list[dict]:
    """The inputs restoring ``experiment``'s procedural training clips gives ``network`` (the float export):
    level-normalised and chunked by the restore engine, as any file would be."""
    recording = network.session = _RecordingSession(network.session)
    restorer = Restorer(network, guard=False)
    for clip in _procedural_clips(experiment, network.sample_rate, CALIBRATION_CLIPS, TRAIN_STREAM):
        restorer(clip, network.sample_rate)
    return recording.feeds


def difference_db(noisy: np.ndarray, one: np.ndarray, other: np.ndarray) -> float:
    """How far below the input's energy (dB) two restores of it differ."""
    difference = np.sum(np.square(one - other, dtype=np.float64))
    return float(10 * np.log10(np.sum(np.square(noisy, dtype=np.float64)) / max(difference, 1e-30)))


def check_int8(int8_path: Path, float_path: Path, experiment: str) -> float:
    """The least ``difference_db`` of the int8 export's restore from the float export's over ``experiment``'s
    procedural validation clips; a ModelError below ``INT8_TOLERANCE_DB``. (Measured against the input, not
    the output: where the model removes nearly everything a small error is large against what it leaves.)"""
    restorers = [Restorer(OnnxNetwork(path, threads=1), guard=False) for path in (float_path, int8_path)]
    rate = restorers[0].model_rate
    worst = min(
        difference_db(clip, *(restorer(clip, rate) for restorer in restorers))
        for clip in _procedural_clips(experiment, rate, CHECK_CLIPS, VAL_STREAM)
    )
    if worst < INT8_TOLERANCE_DB:
        raise ModelError(
            f"{int8_path}: the int8 export restores differently from the float one (on its worst check "
            f"clip the two differ by only {worst:.1f} dB below the input, {INT8_TOLERANCE_DB:.0f} needed); "
            "not kept"
        )
    return worst


def quantize_export(float_path: Path, int8_path: Path, experiment: str) -> str:
    """``float_path`` (a checked float export of a spectral model: export_model refuses the others) ->
    ``int8_path``; returns a one-line description of the calibration for the model's settings. The caller
    stamps and checks the result."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    feeds = calibration_feeds(OnnxNetwork(float_path, threads=1), experiment)

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self.left = iter(feeds)

        def get_next(self):
            return next(self.left, None)

    convolutions = [node.name for node in onnx.load(str(float_path)).graph.node if node.op_type == "Conv"]
    with tempfile.TemporaryDirectory(prefix="c2c-int8-") as scratch:
        prepared = os.path.join(scratch, "prepared.onnx")
        # ONNX shape inference and constant folding; the symbolic pass cannot follow the dynamic time axis
        # through the pixel shuffles, and the int8 nodes need no symbolic shapes.
        quant_pre_process(str(float_path), prepared, skip_symbolic_shape=True)
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrator prints its histogram settings
            quantize_static(
                prepared,
                str(int8_path),
                Feeds(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv"],
                nodes_to_exclude=[convolutions[0], convolutions[-1]],
                per_channel=True,
                reduce_range=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod[CALIBRATION_METHOD],
            )
    return (
        f"int8 convolutions (all but the first and last), activation ranges ({CALIBRATION_METHOD}) from "
        f"{len(feeds)} chunks of {CALIBRATION_CLIPS} procedural {experiment} training clips"
    )
