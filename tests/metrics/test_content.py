"""The content guess for unlabelled files: tones and held notes are music, a voice is speech."""

import numpy as np
import pytest
import torch

from lightning_app.data.speech import SpeechConfig, synthesize_speech
from lightning_app.metrics import functional as MF
from lightning_app.metrics import quality as Q
from lightning_app.metrics.content import guess_content

RATE = 16000


def tone(seconds=3.0, rate=RATE, freqs=(220.0,)):
    t = np.arange(int(seconds * rate)) / rate
    return sum(0.2 * np.sin(2 * np.pi * f * t) for f in freqs)


@pytest.mark.parametrize("freqs", [(220.0,), (440.0,), (220.0, 1300.0), (261.6, 329.6, 392.0)])
def test_steady_tones_and_chords_are_guessed_music(freqs):
    guess = guess_content(tone(freqs=freqs), RATE)
    assert guess.content == "music", guess
    assert guess.spectral_stability > 0.95 and guess.pause_share == 0 and guess.fricative_share == 0
    assert "spectral stability" in guess.why()


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_procedural_speech_is_guessed_speech(seed):
    voice = synthesize_speech(np.random.default_rng(seed), 3 * RATE, RATE, SpeechConfig())
    assert guess_content(voice, RATE).content == "speech"


def test_the_guess_reads_stereo_at_any_rate_and_calls_a_too_short_clip_music():
    voice = synthesize_speech(np.random.default_rng(2), 3 * RATE, RATE, SpeechConfig())
    stereo = np.repeat(
        np.interp(np.arange(3 * 44100) / 44100, np.arange(3 * RATE) / RATE, voice)[:, None], 2, 1
    )
    assert guess_content(stereo, 44100).content == "speech"
    assert guess_content(tone(0.05), RATE).content == "music"  # nothing to measure: no speech measures


# --- the plain words for speech_removed and retention -----------------------------------------------------
def test_speech_removed_is_a_correlation_not_a_share_and_its_words_say_so():
    rng = np.random.default_rng(0)
    clean = torch.from_numpy(tone())[None].float()
    noisy = clean + 0.1 * torch.from_numpy(rng.standard_normal(clean.shape[1]))[None].float()
    # taking away 10 % of the signal and none of the noise reads 1: not "10 % of the signal removed"
    assert float(MF.speech_removed(noisy - 0.1 * clean, noisy, clean)) == pytest.approx(1.0, abs=1e-4)
    assert float(MF.speech_removed(clean, noisy, clean)) < 0.05  # only noise removed
    assert Q.SPEECH_REMOVED_LABEL == "removed-vs-clean corr"
    assert "0 = only noise was removed" in Q.SPEECH_REMOVED_MEANING
    assert "not the share of the signal removed" in Q.SPEECH_REMOVED_MEANING


def test_retention_warnings_name_muting_and_a_louder_output():
    assert Q.retention_warning(3.85) == "LOUDER than the reference (x3.85)"
    assert Q.retention_warning(0.12) == "MUTING (x0.12 of the reference level)"
    assert Q.retention_warning(1.0) is None and Q.retention_warning(1.2) is None
    assert Q.retention_warning(float("nan")) is None
    assert Q.retention_words(0.98) == "level kept (x0.98)"
    assert Q.retention_words(0.8) == "quieter than the reference (x0.80)"
    assert Q.retention_words(3.85) == "LOUDER than the reference (x3.85)"
