"""The numpy STFT the restore engine and the guard share: it resynthesises exactly, and a resynthesis from a
few frames is the resynthesis of the whole spectrum with the others silent."""

import numpy as np
import pytest

from lightning_app.data.dsp import resynthesis, spectrogram


@pytest.mark.parametrize("n_fft, length", [(1024, 44100), (8192, 30000), (64, 1000)])
@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_an_unmodified_spectrum_resynthesises_the_signal(n_fft, length, pad_mode):
    x = np.random.default_rng(0).standard_normal((2, length)).astype(np.float32)
    back = resynthesis(spectrogram(x, n_fft, n_fft // 2, pad_mode=pad_mode), n_fft, n_fft // 2, length)
    assert back.dtype == np.float32 and back.shape == x.shape
    np.testing.assert_allclose(back, x, atol=1e-5)


@pytest.mark.parametrize("frames", [[0], [3, 4, 8], [9], list(range(10))])
def test_a_resynthesis_from_some_frames_is_the_whole_one_with_the_others_silent(frames):
    n_fft, length = 1024, 5000  # 5000 // 512 + 1 = 10 frames; the edge frames are among those asked
    rng = np.random.default_rng(1)
    spec = spectrogram(rng.standard_normal((1, length)).astype(np.float32), n_fft, n_fft // 2)
    spec = spec * rng.uniform(0.0, 1.0, spec.shape).astype(np.float32)  # a modified spectrum
    silent = np.zeros_like(spec)
    silent[..., frames] = spec[..., frames]
    whole = resynthesis(silent, n_fft, n_fft // 2, length)
    some = resynthesis(spec[..., frames], n_fft, n_fft // 2, length, frames=np.array(frames))
    np.testing.assert_allclose(some, whole, atol=1e-6)
    assert np.abs(whole).max() > 0.01, "the frames asked for were silent: the case tests nothing"
