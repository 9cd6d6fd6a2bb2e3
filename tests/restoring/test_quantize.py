"""Int8 exports (c2c-export --int8): the inner convolutions are quantised, the file restores close to the
float export through the same pipeline, and an export that restores too differently is not kept."""

import numpy as np
import onnx
import pytest

from lightning_app import export
from lightning_app.restoring import quantize
from lightning_app.restoring.engine import Restorer
from lightning_app.restoring.export import export_model
from lightning_app.restoring.networks import ModelError, OnnxNetwork
from lightning_app.restoring.quantize import INT8_TOLERANCE_DB, difference_db
from tests.helpers import perturbed_checkpoint

SMALL = {"CALIBRATION_CLIPS": 4, "CHECK_CLIPS": 2, "CALIBRATION_SECONDS": 1.0}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("int8")
    checkpoint = perturbed_checkpoint(tmp, "supervised_unet")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in SMALL.items():
            patch.setattr(quantize, name, value)
        int8_path, worst = export_model(
            checkpoint, tmp / "int8.onnx", int8=True, calibration="supervised_unet"
        )
    return export_model(checkpoint, tmp / "float.onnx")[0], int8_path, worst


def _weight_sources(path) -> dict[str, str]:
    """Each convolution's name -> the op type that makes its weight ('' for a stored float weight)."""
    graph = onnx.load(str(path)).graph
    made_by = {out: node.op_type for node in graph.node for out in node.output}
    return {node.name: made_by.get(node.input[1], "") for node in graph.node if node.op_type == "Conv"}


def test_an_int8_export_quantises_the_inner_convolutions_and_says_so(exports):
    _, int8_path, _ = exports
    sources = list(_weight_sources(int8_path).values())
    assert len(sources) >= 4
    assert sources[0] == "" and sources[-1] == "", "the first and last convolution must stay float"
    assert set(sources[1:-1]) == {"DequantizeLinear"}, f"inner convolutions not all int8: {sources}"
    network = OnnxNetwork(int8_path)
    assert network.precision == "int8" and "int8" in network.engine
    assert "supervised_unet" in network.settings["quantization"]


def test_an_int8_export_restores_close_to_the_float_one_but_not_identically(exports):
    float_path, int8_path, worst = exports
    assert worst >= INT8_TOLERANCE_DB
    rng = np.random.default_rng(3)
    t = np.arange(int(2.3 * 16000)) / 16000
    audio = (0.2 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)[
        :, None
    ]
    one, other = (Restorer(OnnxNetwork(p), guard=False)(audio, 16000) for p in (float_path, int8_path))
    difference = difference_db(audio, one, other)
    assert INT8_TOLERANCE_DB <= difference < 90.0, f"{difference:.1f} dB: too far apart, or not quantised"


def test_an_int8_export_that_restores_too_differently_is_not_kept(tmp_path, monkeypatch, capsys):
    checkpoint = perturbed_checkpoint(tmp_path, "supervised_unet")
    for name, value in {**SMALL, "INT8_TOLERANCE_DB": 200.0}.items():
        monkeypatch.setattr(quantize, name, value)
    out = tmp_path / "out"
    code = export.main([str(checkpoint), "-o", str(out), "--int8", "--calibration", "supervised_unet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "restores differently from the float one" in err[0], err
    assert list(out.iterdir()) == [], "a refused export must leave no file, partial or whole"


def test_a_waveform_model_has_no_int8_export(tmp_path):
    checkpoint = perturbed_checkpoint(tmp_path, "supervised_unet", "model.kind=wave_unet")
    with pytest.raises(ModelError, match="int8 export is for spectral models"):
        export_model(checkpoint, tmp_path / "out", int8=True, calibration="supervised_unet")
    assert list((tmp_path / "out").iterdir()) == []
