"""Real Noise2Noise pairs: alignment by cross-correlation, reports of unusable pairs, training."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from lightning_app import config as C
from lightning_app.data.pairs import RealPairDataset, RealPairIndex, best_lag
from lightning_app.data.speech import SpeechConfig, synthesize_speech
from lightning_app.training.run import train
from tests.helpers import smoke_config

RATE = 16000


def _recording(seconds: float, seed: int) -> np.ndarray:
    return 0.3 * synthesize_speech(np.random.default_rng(seed), int(seconds * RATE), RATE, SpeechConfig())


def _transfer(clean: np.ndarray, lead_in: int, gain: float, seed: int, noise: float = 0.02) -> np.ndarray:
    """clean delayed by ``lead_in`` samples (negative: its start cut off) plus its own hiss, digitised at
    ``gain``."""
    rng = np.random.default_rng(seed)
    shifted = np.concatenate([np.zeros(lead_in), clean]) if lead_in >= 0 else clean[-lead_in:]
    return gain * (shifted + noise * rng.standard_normal(len(shifted)))


def _write(path, audio, rate=RATE):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio.astype(np.float32), rate, subtype="FLOAT")


@pytest.fixture
def pair_folders(tmp_path):
    """a/ and b/: three good pairs (one of them at another rate, level and polarity) and the bad kinds."""
    a, b = tmp_path / "a", tmp_path / "b"
    clean = {
        name: _recording(8.0, seed) for seed, name in enumerate(["side1.wav", "side2.wav", "reel/r3.wav"])
    }
    _write(a / "side1.wav", _transfer(clean["side1.wav"], 0, 1.0, 1))
    _write(b / "side1.wav", _transfer(clean["side1.wav"], 2400, 1.0, 2))  # b starts 150 ms later
    _write(a / "side2.wav", _transfer(clean["side2.wav"], 800, 1.0, 3))
    _write(b / "side2.wav", _transfer(clean["side2.wav"], 0, -0.5, 4))  # b earlier, quieter, inverted
    _write(a / "reel/r3.wav", _transfer(clean["reel/r3.wav"], 0, 1.0, 5))
    b_r3 = _transfer(clean["reel/r3.wav"], 1000, 1.0, 6)
    _write(b / "reel/r3.wav", signal.resample_poly(b_r3, 441, 160), rate=44100)  # digitised at 44.1 kHz
    other = _recording(8.0, 99)
    _write(a / "unrelated.wav", _transfer(clean["side1.wav"], 0, 1.0, 7))
    _write(b / "unrelated.wav", _transfer(other, 0, 1.0, 8))  # a different recording
    fast = signal.resample_poly(clean["side2.wav"], 2000, 2001)  # b runs 0.05 % fast
    _write(a / "drift.wav", _transfer(clean["side2.wav"], 0, 1.0, 9))
    _write(b / "drift.wav", _transfer(fast, 0, 1.0, 10))
    _write(a / "only_in_a.wav", _transfer(clean["side1.wav"], 0, 1.0, 11))
    return a, b


def _index(folders, tmp_path, **kw):
    a, b = folders
    return RealPairIndex.build(
        str(a), str(b), RATE, min_samples=RATE, window_seconds=1.0, cache_dir=str(tmp_path / "cache"), **kw
    )


def test_best_lag_finds_a_known_shift_and_polarity():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4000)
    b = np.concatenate([np.zeros(300 + 37), -2.0 * x, np.zeros(300)])[: 4000 + 600]
    lag, corr = best_lag(x, b, max_lag=300)
    assert lag == 37 and corr == pytest.approx(-1.0, abs=1e-6)


def test_pairs_are_aligned_levelled_and_unusable_ones_reported_by_name(pair_folders, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        index = _index(pair_folders, tmp_path)
    pairs = {p.name: p for p in index.pairs}
    assert sorted(pairs) == ["reel/r3.wav", "side1.wav", "side2.wav"]
    assert pairs["side1.wav"].lag == 2400
    assert pairs["side2.wav"].lag == -800
    assert abs(pairs["reel/r3.wav"].lag - 1000) <= 1  # measured across 16 kHz and 44.1 kHz files
    assert pairs["side2.wav"].gain_b == pytest.approx(-2.0, rel=0.05)
    assert all(p.correlation > 0.6 for p in index.pairs)
    assert set(index.rejected) == {"unrelated.wav", "drift.wav", "only_in_a.wav"}
    assert "too different" in index.rejected["unrelated.wav"]
    assert "drift" in index.rejected["drift.wav"]
    assert "only" in index.rejected["only_in_a.wav"]
    for name in index.rejected:
        assert name in caplog.text


def test_pair_segments_line_up(pair_folders, tmp_path):
    index = _index(pair_folders, tmp_path)
    dataset = RealPairDataset(index, RATE, num_samples=8000, gain_db=(-6.0, 0.0), seed=0)
    for i in range(12):
        example = dataset[(0, 0, 0, i)]
        assert set(example) >= {"noisy", "noisy_b"} and "clean" not in example
        a, b = example["noisy"].numpy().ravel(), example["noisy_b"].numpy().ravel()
        assert np.corrcoef(a, b)[0, 1] > 0.5, index.pairs[int(example["index"])].name
        assert 0.7 < np.std(b) / np.std(a) < 1.4


def test_the_alignment_is_cached(pair_folders, tmp_path, monkeypatch):
    first = _index(pair_folders, tmp_path)
    monkeypatch.setattr("lightning_app.data.pairs.align_pair", lambda *a, **k: pytest.fail("re-measured"))
    again = _index(pair_folders, tmp_path)
    assert [p.lag for p in again.pairs] == [p.lag for p in first.pairs]


def test_no_usable_pair_is_a_clear_error(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a / "x.wav", _transfer(_recording(6.0, 1), 0, 1.0, 1))
    _write(b / "x.wav", _transfer(_recording(6.0, 2), 0, 1.0, 2))
    with pytest.raises(FileNotFoundError, match="no usable real pairs.*x.wav: too different"):
        _index((a, b), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(
    "experiment", ["pure_noise2noise", "noise2noise_fullband"]
)  # 16 kHz speech; 44.1 kHz music
def test_noise2noise_trains_on_real_pairs_and_supervised_refuses_them(pair_folders, tmp_path, experiment):
    a, b = pair_folders
    args = [
        "data.mode=real_pairs",
        f"data.real_pairs.a={a}",
        f"data.real_pairs.b={b}",
        "data.real_pairs.window_seconds=1.0",
        "trainer.max_epochs=1",
    ]
    validation = ["data.val_clips=4"] if experiment == "noise2noise_fullband" else []
    result = train(smoke_config(tmp_path, *args, *validation, experiment=experiment))
    assert "val/si_sdr_i" in result["metrics"] and "val/leakage" in result["metrics"]  # synthetic validation
    if experiment == "noise2noise_fullband":
        assert result["metrics"]["val_status/clips/music"] > 0, (
            "the synthetic validation is scored per content"
        )
    with pytest.raises(C.ConfigError, match="system.kind=supervised needs clean targets"):
        train(smoke_config(tmp_path, *args))
    with pytest.raises(C.ConfigError, match="needs data.real_pairs.a, data.real_pairs.b"):
        train(smoke_config(tmp_path, "data.mode=real_pairs", experiment="pure_noise2noise"))
