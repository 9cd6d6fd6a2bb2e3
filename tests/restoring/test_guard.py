"""The do-no-harm guard: it holds back removals that do not look like noise, and only those."""

import math
from dataclasses import replace

import numpy as np
import pytest

from lightning_app.data.noise import clicks as scratch_clicks
from lightning_app.restoring.engine import Restorer
from lightning_app.restoring.guard import (
    DEFAULT_PASSES,
    ClickRelease,
    ClickSettings,
    Guard,
    GuardedDenoiser,
    GuardPass,
    GuardSettings,
    box_mean,
    guard_alone,
)

RATE = 44100


class _Fixed:
    """A stand-in network whose output is ``keep(noisy)``."""

    engine = "a stand-in"

    def __init__(self, keep):
        self.keep = keep
        self.sample_rate = RATE

    def enhance(self, noisy):
        return self.keep(noisy)


def _tone_and_noise(seconds=3.0, tone_db=-20.0, noise_db=-50.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    tone = (
        10 ** (tone_db / 20)
        * np.sqrt(2)
        * np.sin(2 * np.pi * 440 * t)
        * (1 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
    )
    noise = 10 ** (noise_db / 20) * rng.standard_normal(len(t))
    return tone.astype(np.float32), noise.astype(np.float32)


def _energy(x):
    return float(np.sum(np.square(x, dtype=np.float64)))


def _low_chord(seconds=5.0, level_db=-20.0):
    """A sustained low chord (partials of 82 and 110 Hz, a bass and a cello): in 23-ms bins its partials blur
    into one band that never falls silent, so a short window alone takes the chord for the noise floor."""
    t = np.arange(int(seconds * RATE)) / RATE
    chord = sum(np.sin(2 * np.pi * f0 * k * t + k) / k for f0 in (82.4, 110.0) for k in range(1, 8))
    chord *= 1 + 0.6 * np.sin(
        2 * np.pi * 0.5 * t
    )  # bowed swells (a level that never moves is hum, and may go)
    chord *= 10 ** (level_db / 20) / np.sqrt(np.mean(chord**2))
    return chord.astype(np.float32)


def _rumble(seconds=5.0, cutoff_hz=30.0, level_db=-30.0, seed=1):
    """Turntable rumble: stationary noise under a steep low-pass, whose level in short frames wanders
    slowly."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum = np.fft.rfft(rng.standard_normal(n)) / (1 + (freqs / cutoff_hz) ** 4) * (freqs > 5.0)
    rumble = np.fft.irfft(spectrum, n)
    return (rumble * 10 ** (level_db / 20) / np.sqrt(np.mean(rumble**2))).astype(np.float32)


# : The guard before it judged the removal by its local mean and the floor by power smoothed over several
# frames:
#: each cell against a 3-frame floor, every varying bin against its neighbours.
CELL_BY_CELL = (
    GuardSettings(window_seconds=0.186, neighbour_bins=16, transient_db=12.0),
    GuardSettings(window_seconds=0.023, neighbour_bins=0, floor_margin_db=8.0),
)


@pytest.mark.parametrize("cutoff_hz", [15.0, 80.0])
@pytest.mark.parametrize(
    "passes, lets_it_go", [(None, True), (CELL_BY_CELL, False)], ids=["default guard", "cell-by-cell guard"]
)
def test_removed_rumble_stays_removed(cutoff_hz, passes, lets_it_go):
    tone, _ = _tone_and_noise(5.0)
    rumble = _rumble(cutoff_hz=cutoff_hz)
    out = Guard(RATE, passes)((tone + rumble)[None, None], tone[None, None])[
        0, 0
    ]  # the model took the rumble
    put_back = _energy(out - tone) / _energy(rumble)
    if lets_it_go:
        assert put_back < 0.05, f"the guard put back {put_back:.0%} of the rumble the model removed"
    else:  # the design this test guards against: it took the rumble's slow dips for its floor
        assert put_back > 0.3, f"the cell-by-cell guard put back only {put_back:.0%} of the rumble"


@pytest.mark.parametrize(
    "passes, keeps_the_chord",
    [(None, True), (GuardSettings(), False)],
    ids=["default two-resolution guard", "short window alone"],
)
def test_the_long_pass_keeps_a_sustained_low_chord_a_model_halved(passes, keeps_the_chord):
    chord = _low_chord()
    _, noise = _tone_and_noise(seconds=5.0, noise_db=-55.0)
    noisy = (chord + noise)[None, None]
    out = Guard(RATE, passes)(noisy, 0.5 * noisy)[0, 0]  # the model took half of everything
    lost = _energy(out - chord - noise) / _energy(0.5 * chord)
    # the default must put back at least 90 % of what was taken from the chord; the short window alone does
    # not
    # (the reason the long pass exists: if it ever starts to, this case no longer shows the difference)
    assert (lost < 0.1) == keeps_the_chord, f"{lost:.0%} of the chord's halving stayed removed"


#: The default passes with the whole floor margin everywhere, as before the loud-cell rule (``loud_db``).
WHOLE_MARGIN = tuple(replace(s, loud_db=None) for s in DEFAULT_PASSES)


@pytest.mark.parametrize(
    "passes, holds_it_back", [(None, True), (WHOLE_MARGIN, False)], ids=["default guard", "whole margin"]
)
def test_a_loud_tone_the_model_thinned_a_little_comes_back_and_the_noise_it_removed_stays_removed(
    passes, holds_it_back
):
    """The model removed the noise and a part of a tone 58 dB below the tone, which stands 30 dB above the
    noise. Per bin that part stands a few dB above the noise floor, inside the margin noise is allowed; where
    the input stands far above its floor it is the tone thinned, and the default guard puts much of it
    back."""
    tone, noise = _tone_and_noise(5.0)
    thinning = 10 ** (-58 / 20)
    noisy = (tone + noise)[None, None]
    out = Guard(RATE, passes, clicks=None)(noisy, (1 - thinning) * tone[None, None])[0, 0]
    removed = (noisy[0, 0] - out).astype(np.float64)
    still_removed = np.dot(removed, tone) / np.dot(tone.astype(np.float64), tone) / thinning
    noise_back = _energy(out - tone) / _energy(noise)
    assert noise_back < 0.01, f"the guard put back {noise_back:.1%} of the noise the model removed"
    if holds_it_back:
        assert still_removed < 0.75, f"{still_removed:.0%} of the tone's thinning stayed removed"
    else:  # the case this rule is for: inside the whole margin the thinning goes as noise would
        assert still_removed > 0.95, (
            f"the whole-margin guard put back {1 - still_removed:.0%} of the thinning"
        )


def test_a_model_that_removes_the_tone_is_held_back():
    tone, noise = _tone_and_noise()
    noisy = (tone + noise)[None, None]
    guard = Guard(RATE)
    out = guard(noisy, np.zeros_like(noisy))[0, 0]  # the model removed everything, tone included
    kept = _energy(out - noise) / _energy(tone)  # what of the tone came back (the noise may go)
    left = _energy(out - tone) / _energy(noise)  # what of the noise is still there
    assert 0.9 < kept < 1.1, f"the guard put back {kept:.2f} of the tone's energy"
    assert left < 2.0, f"the guard put back more than the noise itself ({left:.2f})"
    assert guard.share_restored > 0.9


@pytest.mark.parametrize(
    "loud", [dict(loud_db=(24.0, 12.0)), dict(loud_db=(12.0, 24.0), loud_margin_db=12.0)]
)
def test_a_loud_margin_that_falls_the_wrong_way_is_refused(loud):
    with pytest.raises(ValueError, match="loud_db must rise"):
        GuardSettings(floor_margin_db=8.0, **loud)


def test_where_the_model_removes_only_noise_the_output_is_left_as_it_is():
    tone, noise = _tone_and_noise()
    noisy = (tone + noise)[None, None]
    model_out = tone[None, None]  # exactly the noise removed
    guard = Guard(RATE)
    out = guard(noisy, model_out)
    assert _energy(out - model_out) < 0.05 * _energy(noise), "the guard changed a noise-only removal"
    assert guard.share_restored < 0.05


def test_a_removal_of_floor_level_noise_alone_leaves_the_models_output_exactly_as_it_is():
    tone, noise = _tone_and_noise()
    noisy = (tone + noise)[None, None]
    model_out = (tone + 0.5 * noise)[None, None]  # a quarter of the noise's power removed, nothing else
    guard = Guard(RATE)
    out = guard(noisy, model_out)
    assert np.array_equal(out, model_out), "the guard changed an output it had nothing to hold back in"
    assert guard.share_restored == 0.0


@pytest.mark.parametrize("held", ["some cells", "most cells"])
def test_judging_the_few_cells_that_may_be_held_back_alone_gives_what_judging_every_cell_does(
    monkeypatch, held
):
    """The guard works out the transient test and what it holds back for the cells the floor alone would
    hold back (most of a chunk lets the removal go whole) when they are few, and for every cell at once when
    they are many; both ways must give the same output."""
    tone, noise = _tone_and_noise(noise_db=-60.0)
    clicks = np.zeros_like(tone)
    clicks[np.arange(3000, len(tone), 7919)] = 0.5  # loud enough that the transient rule decides
    noisy = (tone + noise + clicks)[None, None]
    # a model that removes the clicks, the noise and some of the tone (a part of it or nearly all of it)
    model_out = ((0.9 if held == "some cells" else 0.05) * tone)[None, None]
    outputs = []
    for gather_below in (1.0, 0.0):  # every cell that may be held back gathered; every cell judged at once
        monkeypatch.setattr(GuardPass, "gather_below", gather_below)
        guard = Guard(RATE)
        outputs.append((guard(noisy, model_out), guard.share_restored))
    (gathered, gathered_share), (every, every_share) = outputs
    assert every_share > 0.01, "the case holds nothing back, so it tests nothing"
    np.testing.assert_allclose(gathered, every, rtol=0, atol=1e-6 * np.abs(every).max())
    assert gathered_share == pytest.approx(every_share, rel=1e-5)


def test_the_share_put_back_counts_the_removal_of_chunks_let_go_whole():
    """A chunk whose removal the guard lets go whole still removed energy: the file's share put back is of
    all it removed, not of the chunks where something was held back."""
    tone, noise = _tone_and_noise()
    guard = Guard(RATE)
    let_go = guard((tone + noise)[None, None], (tone + 0.5 * noise)[None, None])  # a quarter of the noise
    assert guard.share_restored == 0.0
    held = guard(tone[None, None], 0.5 * tone[None, None])[0, 0]  # half the tone
    removed = _energy(0.5 * noise) + _energy(0.5 * tone)
    restored = _energy(held - 0.5 * tone)
    assert guard.removed == pytest.approx(removed, rel=1e-4), "a chunk let go whole was left out of the sum"
    assert guard.share_restored == pytest.approx(restored / removed, rel=1e-3)
    assert let_go.shape == (1, 1, len(tone))


def _transient_room_cell_by_cell(magnitude, k, step_db):
    """The transient rule written out cell by cell (the guard's docstring): a cell more than ``step_db`` above
    the larger of the means of the k frames before and after it, leaving out the next frame on each side (the
    end frames repeated beyond the ends), is found; a cell is a transient when it or a frame beside it is
    found, and may then lose all of it above its surroundings."""
    batch, bins, frames = magnitude.shape

    def typical(b, f, t):
        at = lambda ts: magnitude[b, f, np.clip(ts, 0, frames - 1)].mean()  # noqa: E731
        return max(at(np.arange(t - k - 1, t - 1)), at(np.arange(t + 2, t + k + 2)))

    def found(b, f, t):
        return 0 <= t < frames and magnitude[b, f, t] > typical(b, f, t) * 10 ** (step_db / 20)

    room = np.zeros(magnitude.shape)
    for b in range(batch):
        for f in range(bins):
            for t in range(frames):
                if found(b, f, t - 1) or found(b, f, t) or found(b, f, t + 1):
                    room[b, f, t] = max(magnitude[b, f, t] - typical(b, f, t), 0.0)
    return room


@pytest.mark.parametrize("k, frames", [(4, 40), (2, 5), (3, 7)])
def test_the_transient_rule_is_the_one_written_cell_by_cell_for_every_cell_and_for_cells_gathered(k, frames):
    rng = np.random.default_rng(5)
    spectrum = (rng.standard_normal((2, 6, frames)) + 1j * rng.standard_normal((2, 6, frames))).astype(
        np.complex64
    )
    spectrum[..., frames // 2] *= 40.0  # clicks
    spectrum[0, 2, 0] *= 60.0  # a click in the first frame
    settings = GuardSettings(transient_frames=k, transient_db=12.0)
    guard_pass = GuardPass(RATE, settings)
    expected = _transient_room_cell_by_cell(np.abs(spectrum).astype(np.float64), k, settings.transient_db)
    assert np.count_nonzero(expected) > 4, "no transient found: the case tests nothing"
    np.testing.assert_allclose(guard_pass.transient_allowance(spectrum), expected, rtol=1e-5, atol=1e-6)
    cells = np.nonzero(rng.random(spectrum.shape) < 0.4)
    np.testing.assert_allclose(
        guard_pass.transient_allowance(spectrum, cells), expected[cells], rtol=1e-5, atol=1e-6
    )


def test_clicks_may_be_removed_whole():
    tone, noise = _tone_and_noise(noise_db=-60.0)
    clicks = np.zeros_like(tone)
    clicks[np.arange(5000, len(tone), 11000)] = 0.5  # loud single-sample clicks on a quiet background
    noisy = (tone + noise + clicks)[None, None]
    out = Guard(RATE)(noisy, (tone + noise)[None, None])[0, 0]  # the model removed the clicks alone
    assert _energy(out - tone - noise) < 0.1 * _energy(clicks), "the guard put the clicks back"


def _piano(seconds=3.0, every_s=0.125, decay_s=0.5, level=0.05, seed=0):
    """Busy piano-like music: a new note every ``every_s`` (random pitch over two octaves, 30 partials up to
    12 kHz), each dying away over ``decay_s`` under the next ones."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    music = np.zeros(n)
    for start in np.arange(0, n, int(every_s * RATE)):
        f0 = 220 * 2 ** (rng.integers(0, 24) / 12)
        t = np.arange(n - start) / RATE
        partials = sum(np.sin(2 * np.pi * f0 * k * t) / k**1.5 for k in range(1, 30) if f0 * k < 12000)
        music[start:] += partials * np.exp(-t / decay_s)
    return (music * level / np.sqrt(np.mean(music**2))).astype(np.float32)


@pytest.mark.parametrize(
    "release, lets_them_go", [("default", True), (None, False)], ids=["default guard", "no click release"]
)
def test_scratch_clicks_over_busy_music_the_model_took_whole_go(release, lets_them_go):
    """Over notes that come and go a scratch click is no transient in the input's 186-ms frames, and the long
    pass put part of it back; in the removal it stands out in 5.8-ms frames, and the click release lets it go
    before the passes."""
    music = _piano()
    scratches = scratch_clicks(np.random.default_rng(1), len(music), RATE, rate_hz=(1.0, 3.0))
    scratches = (scratches * np.sqrt(np.mean(music**2) / np.mean(scratches**2)) * 10 ** (-10 / 20)).astype(
        np.float32
    )  # 10 dB below the music
    guard = Guard(RATE) if release == "default" else Guard(RATE, clicks=None)
    out = guard((music + scratches)[None, None], music[None, None])[0, 0]
    back = _energy(out - music) / _energy(scratches)
    if lets_them_go:
        # 3 % came back before the long pass's loud-cell margin (``loud_db``), 5 % with it: over the loudest
        # notes the remains of a click the release did not take stand a few dB over the floor there
        assert back < 0.08, f"the guard put back {back:.2f} of the clicks the model removed"
    else:
        assert back > 0.15, (
            f"without the click release the clicks still went ({back:.2f}): the case tests nothing"
        )


def _burst(decay_s, length=RATE, every_s=0.3, level=0.3, seed=4):
    """Broadband bursts that die away over ``decay_s``: a scratch click at 1 ms, a drum's attack at 40 ms."""
    rng = np.random.default_rng(seed)
    out = np.zeros(length)
    size = int(8 * decay_s * RATE)
    for start in np.arange(int(0.1 * RATE), length - size, int(every_s * RATE)):
        out[start : start + size] += rng.standard_normal(size) * np.exp(-np.arange(size) / (decay_s * RATE))
    return (out * level / np.abs(out).max()).astype(np.float32)


def test_the_click_release_takes_short_bursts_taken_whole_and_nothing_else():
    release = ClickRelease(RATE, ClickSettings())
    tone, noise = _tone_and_noise(seconds=1.0, noise_db=-60.0)
    for decay_s, share_removed, expected in ((0.001, 1.0, "all"), (0.04, 1.0, "none"), (0.001, 0.5, "none")):
        burst = _burst(decay_s)
        x = (tone + noise + burst)[None]
        part = release(x, share_removed * burst[None])
        let_go = 0.0 if part is None else _energy(part) / _energy(share_removed * burst)
        what = f"a {1000 * decay_s:g}-ms burst, {100 * share_removed:g} % of it removed"
        if expected == "all":
            assert let_go > 0.8, f"{what}: only {let_go:.2f} of it let go as a click"
        else:
            assert let_go < 0.1, f"{what}: {let_go:.2f} of it let go as a click"


def test_the_click_release_judges_each_channel_alone_and_never_lets_an_added_click_go():
    release = ClickRelease(RATE, ClickSettings())
    tone, noise = _tone_and_noise(seconds=1.0, noise_db=-60.0)
    burst = _burst(0.001)
    x = np.stack([tone + noise + burst, tone + noise])
    removed = np.stack([burst, np.zeros_like(burst)])
    alone = release(x[:1], removed[:1])
    together = release(x, removed)
    np.testing.assert_allclose(together[:1], alone, atol=1e-6)
    assert _energy(together[1]) == 0.0, "a channel with nothing removed had something let go"
    # A model that adds clicks "removes" their negative: a removal larger than the input is not taken whole.
    added = release((tone + noise)[None], -burst[None])
    assert added is None or _energy(added) < 0.01 * _energy(burst), "a click the model added was let go"
    out = Guard(RATE)((tone + noise)[None, None], (tone + noise + burst)[None, None])[0, 0]
    assert _energy(out - tone - noise) < 0.2 * _energy(burst), "the guard kept clicks the model added"


def _hits(length, every_s=0.25, decay_s=0.004, level=0.3, seed=3):
    """Short bright percussion (a closed hi-hat): bursts of noise above 6 kHz that die away in a few ms. At
    23 ms a hit fills a frame or two, as a click does."""
    rng = np.random.default_rng(seed)
    hits = np.zeros(length)
    burst = rng.standard_normal(int(8 * decay_s * RATE)) * np.exp(
        -np.arange(int(8 * decay_s * RATE)) / (decay_s * RATE)
    )
    for start in np.arange(int(0.1 * RATE), length - len(burst), int(every_s * RATE)):
        hits[start : start + len(burst)] += burst
    spectrum = np.fft.rfft(hits)
    spectrum[np.fft.rfftfreq(length, 1 / RATE) < 6000.0] = 0.0
    hits = np.fft.irfft(spectrum, length)
    return (hits * level / np.abs(hits).max()).astype(np.float32)


@pytest.mark.parametrize(
    "passes, puts_them_back",
    [(None, True), (tuple(replace(s, whole_above_hz=math.inf) for s in DEFAULT_PASSES), False)],
    ids=["default guard", "transients go however thinly taken"],
)
def test_bright_hits_the_model_only_thinned_come_back(passes, puts_them_back):
    """A model that takes 40 % off every hi-hat hit is unsure of them, not removing clicks: above 4 kHz a
    transient goes only as far as the model takes it whole, so the default guard puts the hits back (without
    that rule they pass for clicks and stay thinned)."""
    tone, noise = _tone_and_noise(noise_db=-60.0)
    hits = _hits(len(tone))
    noisy = (tone + noise + hits)[None, None]
    out = Guard(RATE, passes)(noisy, (tone + 0.6 * hits)[None, None])[0, 0]
    back = 1.0 - _energy(out - tone - hits) / _energy(0.4 * hits)  # of the hits' thinned part (noise aside)
    if puts_them_back:
        assert back > 0.7, f"the guard put back only {back:.2f} of the thinned hits"
    else:
        assert back < 0.3, f"without the rule the hits still came back ({back:.2f}): the case tests nothing"


def test_bright_hits_the_model_takes_whole_may_go_like_clicks():
    tone, noise = _tone_and_noise(noise_db=-60.0)
    hits = _hits(len(tone))
    noisy = (tone + noise + hits)[None, None]
    out = Guard(RATE)(noisy, (tone + noise)[None, None])[0, 0]  # the model removed the hits whole
    assert _energy(out - tone - noise) < 0.1 * _energy(hits), "the guard put back transients taken whole"


@pytest.mark.parametrize(
    "passes, lets_it_go",
    [(None, True), (tuple(replace(s, click_band_share=1.0) for s in DEFAULT_PASSES), False)],
    ids=["default guard", "no frame taken for a click"],
)
def test_a_broadband_click_the_model_only_thinned_may_still_go(passes, lets_it_go):
    """A click sounds below 2 kHz as well as above: the taken-whole rule is for bright hits alone, so a click
    the model took 60 % off stays as the model left it (were no frame taken for a click, its top would come
    back)."""
    tone, noise = _tone_and_noise(noise_db=-60.0)
    clicks = np.zeros_like(tone)
    clicks[np.arange(5000, len(tone), 11000)] = 0.5  # single samples: flat to the top of the band
    noisy = (tone + noise + clicks)[None, None]
    model_out = (tone + noise + 0.4 * clicks)[None, None]
    out = Guard(RATE, passes)(noisy, model_out)[0, 0]
    back = _energy(out - model_out[0, 0]) / _energy(0.6 * clicks)  # of the clicks' removed part
    if lets_it_go:
        assert back < 0.05, f"the guard put back {back:.2f} of a click the model thinned"
    else:
        assert back > 0.1, f"with no frame taken for a click the thinned click stayed thinned ({back:.2f})"


def test_the_restorer_guards_by_default_and_not_when_asked():
    tone, noise = _tone_and_noise(seconds=2.0)
    audio = (tone + noise)[:, None].astype(np.float64)
    muting = _Fixed(lambda x: 0.3 * x)  # the research's failure: keeps 30 % of everything
    guarded = Restorer(muting)(audio, RATE)[:, 0]
    plain = Restorer(muting, guard=False)(audio, RATE)[:, 0]
    np.testing.assert_allclose(plain, 0.3 * audio[:, 0], atol=1e-6)
    assert np.sqrt(np.mean(guarded**2) / np.mean(audio**2)) > 0.9, "the guard let the model mute"
    restorer = Restorer(muting)
    restorer.reset_guard()
    restorer(audio, RATE)
    assert restorer.guard_share() > 0.8 and Restorer(muting, guard=False).guard_share() is None
    assert "guard" in restorer.describe(RATE)


def test_guard_alone_takes_away_noise_but_not_the_tone():
    tone, noise = _tone_and_noise(noise_db=-40.0)
    out = guard_alone(RATE).enhance((tone + noise)[None, None])[0, 0]
    assert _energy(out - tone) < _energy(noise), "the guard alone did not reduce the noise"
    assert _energy(out - noise) > 0.9 * _energy(tone) * 0.9


@pytest.mark.parametrize("length", [100, 2048])
def test_short_input_passes(length):
    x = np.random.default_rng(0).standard_normal((1, length)).astype(np.float32)
    out = GuardedDenoiser(_Fixed(lambda v: 0.5 * v)).enhance(x)
    assert out.shape == x.shape and np.all(np.isfinite(out))


@pytest.mark.parametrize("bins, frames", [(1, 1), (3, 1), (1, 5), (7, 7), (9, 3), (5, 9)])
def test_box_mean_is_the_mean_of_each_cells_neighbourhood_cut_at_the_edges(bins, frames):
    rng = np.random.default_rng(3)
    # powers spanning 100 dB, as a spectrum's bins do
    power = rng.random((2, 12, 9)) * 10.0 ** rng.uniform(-10, 0, size=(1, 12, 1))
    expected = np.empty_like(power)
    for b in range(12):
        for f in range(9):
            box = power[
                :, max(0, b - bins // 2) : b + bins // 2 + 1, max(0, f - frames // 2) : f + frames // 2 + 1
            ]
            expected[:, b, f] = box.mean(axis=(1, 2))
    np.testing.assert_allclose(box_mean(power, bins, frames), expected, rtol=1e-6)


def test_the_last_chunk_of_a_file_is_restored_like_the_rest():
    """The last chunk reaches past the file's end. Filled with zeros, it was mostly digital silence: its noise
    floor fell to nothing and the guard put back all the removed noise of the file's last seconds."""
    noise = _tone_and_noise(seconds=6.0, tone_db=-90.0, noise_db=-40.0)[1]  # steady noise, 5-s chunks
    audio = noise[:, None].astype(np.float64)
    out = Restorer(_Fixed(np.zeros_like))(audio, RATE)[
        :, 0
    ]  # a model that removes everything: the guard decides
    removed = audio[:, 0] - out
    middle, tail = removed[2 * RATE : 4 * RATE], removed[int(5.2 * RATE) :]
    ratio_db = 10 * np.log10(_energy(tail) / len(tail) / (_energy(middle) / len(middle)))
    assert abs(ratio_db) < 1.0, f"the file's tail had {ratio_db:+.1f} dB of the removal the middle had"
