"""The research's mixing formula and the Noise2Noise pair's independence."""

import numpy as np
import pytest

from lightning_app.data.datasets import MixtureDataset
from lightning_app.data.mixing import gain_without_clipping, noise_at_snr
from lightning_app.data.noise import GENERATORS
from lightning_app.data.sources import ProceduralNoise, ProceduralSpeech

SR = 16000
ALL_GENERATORS = {name: {"weight": 1.0} for name in GENERATORS}


def _dataset(mode, **kw):
    params = dict(num_samples=SR, snr_db=(2, 20), gain_db=(-20, 0), seed=7)
    params.update(kw)
    return MixtureDataset(ProceduralSpeech(SR), ProceduralNoise(SR, ALL_GENERATORS), mode=mode, **params)


def _snr_db(clean, noise):
    return 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))


def test_noise_at_snr_matches_formula():
    rng = np.random.default_rng(0)
    clean, noise = rng.standard_normal(8000), 3.0 * rng.standard_normal(8000)
    scaled = noise_at_snr(clean, noise, 6.0)
    expected = noise * np.sqrt(np.mean(clean**2) / (10**0.6 * np.mean(noise**2)))
    np.testing.assert_allclose(scaled, expected)
    assert abs(_snr_db(clean, scaled) - 6.0) < 1e-9


def test_measured_snr_equals_drawn_snr_after_gain_and_clipping_guard():
    ds = _dataset("supervised")
    for i in range(40):
        ex = ds[(0, 0, 0, i)]
        clean, noisy = ex["clean"].numpy(), ex["noisy"].numpy()
        assert abs(_snr_db(clean, noisy - clean) - float(ex["snr_db"])) < 0.1, ex["noise_type"]
        assert np.abs(noisy).max() <= 0.99 + 1e-6 and np.abs(clean).max() <= 0.99 + 1e-6


def test_snr_range_is_respected():
    ds = _dataset("supervised", snr_db=(10, 12))
    snrs = [float(ds[(0, 0, 0, i)]["snr_db"]) for i in range(20)]
    assert min(snrs) >= 10 and max(snrs) <= 12


def test_gain_keeps_ratios_and_never_clips():
    sig = {"a": np.array([0.5, -2.0]), "b": np.array([0.1, 0.1])}
    out = gain_without_clipping(sig, gain_db=6.0)
    assert np.abs(out["a"]).max() == pytest.approx(0.99, rel=1e-6)
    assert out["a"][0] / out["b"][0] == pytest.approx(5.0, rel=1e-6)


def test_noise2noise_pairs_share_clean_but_not_noise():
    ds = _dataset("noise2noise")
    correlations = []
    for i in range(30):
        ex = ds[(0, 0, 0, i)]
        clean, na, nb = (ex[k].numpy().ravel() for k in ("clean", "noise", "noise_b"))
        np.testing.assert_allclose(ex["noisy"].numpy().ravel(), clean + na, atol=1e-6)
        np.testing.assert_allclose(ex["noisy_b"].numpy().ravel(), clean + nb, atol=1e-6)
        assert not np.allclose(na, nb)
        correlations.append(np.corrcoef(na, nb)[0, 1])
    # Independent draws: correlations scatter around 0 (periodic generators such as hum can
    # correlate by chance in one pair, so the check is on the average).
    assert abs(np.mean(correlations)) < 0.1


def test_every_generator_gives_finite_unit_rms_noise_of_the_right_length():
    rng = np.random.default_rng(3)
    for name, fn in GENERATORS.items():
        for n in (4000, 16001):
            x = fn(rng, n, SR)
            assert x.shape == (n,), name
            assert np.all(np.isfinite(x)), name
            assert np.sqrt(np.mean(x**2)) == pytest.approx(1.0, rel=1e-3), name


def test_noise_mixture_rejects_unknown_and_all_zero_weights():
    with pytest.raises(ValueError, match="laser"):
        ProceduralNoise(SR, {"laser": {"weight": 1.0}})
    with pytest.raises(ValueError, match="every weight is 0"):
        ProceduralNoise(SR, {"white": {"weight": 0.0}})
