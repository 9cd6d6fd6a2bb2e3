"""Reference-free figures for real archive files that have no clean reference.

What a restoration did to a file, measured on the file alone, before and after: the noise floor, the
rate of clicks, the level change, the share of energy removed per band and, for speech, DNSMOS P.835
(metrics/dnsmos.py). :func:`figures` is the one function the HTML report and ``evaluate`` on a folder
without clean references call; the others are its parts.

Signals are float arrays of shape (frames,) or (frames, channels) at any sample rate, in full-scale
units (|x| <= 1). Levels are dBFS with RMS 1.0 = 0 dBFS (a full-scale sine reads -3 dBFS). Pure
numpy/scipy, no torch: :func:`figures` of three minutes of 44.1 kHz stereo, before and after, takes about
one second of one CPU core (DNSMOS aside: ~1 s per 9 s window of speech, see metrics/dnsmos.py).

Keys of :func:`figures` (every value a float; NaN where a figure does not apply):

    noise_floor_db_before, noise_floor_db_after   noise floor (dBFS), :func:`noise_floor_db`
    noise_floor_change_db                         after - before (dB; negative = quieter floor)
    click_rate_before, click_rate_after           impulsive events per second, :func:`click_rate`
    level_db_before, level_db_after               RMS level (dBFS, channels pooled by power)
    level_change_db                               RMS level change after vs before (dB),
                                                  :func:`level_change_db`
    removed_<band>                                share of the input's energy in <band> that the restoration
                                                  removed, :func:`band_energy_removed`; <band> is one of
                                                  0_100, 100_500, 500_2k, 2k_6k, 6k_nyq (Hz; a band that
                                                  starts at or above Nyquist is left out, so at rates of
                                                  12 kHz and below the key set is smaller); negative =
                                                  energy added
    dnsmos_{sig,bak,ovrl}_{before,after}          DNSMOS P.835 (1..5) for speech and unlabelled content;
                                                  NaN for music (a speech measure), without the ``dnsmos``
                                                  extra, on a clip error, or with ``dnsmos=False`` — the
                                                  reason is logged, and
                                                  :func:`lightning_app.metrics.dnsmos.skip_reason` says it
"""

from __future__ import annotations

import logging
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import fft as sfft
from scipy.signal import butter, sosfilt

from lightning_app.metrics import dnsmos as D

log = logging.getLogger(__name__)

FLOOR_DB = -120.0  # levels are clamped here: digital silence reads -120 dBFS, not -inf
_FLOOR_POWER = 10.0 ** (FLOOR_DB / 10.0)

# Noise floor: 5th percentile of the power of 20 ms frames at a 10 ms hop.
NOISE_FRAME_S = 0.02
NOISE_PERCENTILE = 5.0

# Clicks: high-pass, local robust scale, outliers grouped into events.
CLICK_HIGHPASS_HZ = 3000.0
CLICK_BLOCK_S = 0.005
CLICK_THRESHOLD = 6.0  # in robust standard deviations (MAD / 0.6745) of the high-passed signal
CLICK_MERGE_S = 0.001
CLICK_MAX_EVENT_S = 0.005
CLICK_SCALE_FLOOR = 1e-5  # -100 dBFS: in digital silence a click must still exceed 6e-5 to count
CLICK_PEAK_RATIO = 2.0  # a click stands this far above the peaks around it
CLICK_NEIGHBOUR_BLOCKS = 15  # 1 ms blocks: the near and the far neighbourhood on each side

# Bands for band_energy_removed: (low, high) in Hz, high None = Nyquist.
BANDS: tuple[tuple[float, float | None], ...] = (
    (0.0, 100.0),
    (100.0, 500.0),
    (500.0, 2000.0),
    (2000.0, 6000.0),
    (6000.0, None),
)
_BAND_EMPTY = 1e-10  # a band holding less than this share of the input's power has nothing to remove: NaN


def _frames_channels(x: np.ndarray) -> np.ndarray:
    """(frames,) or (frames, channels) -> float32/float64 (frames, channels), checked: samples, all finite."""
    a = np.asarray(x)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(
            f"expected a (frames,) or (frames, channels) signal with samples, got shape {np.shape(x)}"
        )
    a = a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)
    if not np.isfinite(a.sum(dtype=np.float64)) and not np.all(np.isfinite(a)):  # a cheap sum first
        raise ValueError("signal has NaN or Inf samples")
    return a


def _db(power: float) -> float:
    return 10.0 * math.log10(max(power, _FLOOR_POWER))


def _mean_power(a: np.ndarray) -> float:
    flat = a.ravel()  # a view: (frames, channels) arrays here are C-contiguous or 1-D views
    return float(np.dot(flat, flat)) / flat.size


def _trim_edge_silence(a: np.ndarray) -> np.ndarray:
    """Drop exactly-zero frames at the start and end: a transfer's digital padding is not the recording."""
    if np.any(a[0]) and np.any(a[-1]):
        return a
    nonzero = np.flatnonzero(np.any(a != 0.0, axis=1))
    return a[nonzero[0] : nonzero[-1] + 1] if nonzero.size else a[:0]


def noise_floor_db(
    x: np.ndarray, rate: int, frame_s: float = NOISE_FRAME_S, percentile: float = NOISE_PERCENTILE
) -> float:
    """Noise floor in dBFS: the ``percentile`` (5th) of the power of ``frame_s`` (20 ms) frames, hop half a
    frame.

    The floor is what is left between the words or notes, so it is read from the quietest frames. 20 ms
    frames at a 10 ms hop fit whole inside any gap of 30 ms or more (the closure of a stop, the space
    between words, a breath), and still measure steady noise to a fraction of a dB (320 samples at 16 kHz).
    The 5th percentile rather than the minimum: the minimum follows chance dips, fades and the odd dropout,
    while the lowest 5 % of a 10 s clip is still 50 frames; and rather than the 10th: the floor then needs
    only 5 % of the time to be gaps, which fairly continuous speech still has. Where too few frames are
    pauses (dense speech or music) the figure is an upper bound on the floor; on steady Gaussian noise it
    reads slightly low (the spread of a frame's power), uncorrected. docs/measurements.md has the figures.

    Channels are pooled by power (a frame's power over all its channels). Exactly-zero samples at the start
    and end (digital padding) are not counted; zeros inside the file are, so a restoration that gates the
    pauses to silence reads ``FLOOR_DB`` (-120 dBFS), the clamp for digital silence.
    """
    return _noise_floor(_frames_channels(x), rate, frame_s, percentile)


def _noise_floor(
    a: np.ndarray, rate: int, frame_s: float = NOISE_FRAME_S, percentile: float = NOISE_PERCENTILE
) -> float:
    a = _trim_edge_silence(a)
    if a.shape[0] == 0:
        return FLOOR_DB
    half = max(1, int(round(frame_s * rate / 2)))
    if a.shape[0] < 2 * half:
        return _db(float(np.mean(np.square(a), dtype=np.float64)))
    usable = a.shape[0] // half * half
    rows = np.ascontiguousarray(a[:usable]).reshape(usable // half, half * a.shape[1])
    halves = np.einsum("ij,ij->i", rows, rows, dtype=np.float64) / rows.shape[1]
    power = 0.5 * (halves[:-1] + halves[1:])  # frames of two halves, one half apart
    return _db(float(np.percentile(power, percentile)))


def click_positions(x: np.ndarray, rate: int) -> np.ndarray:
    """Sample index of each click that :func:`click_rate` counts (its first outlying sample), ascending."""
    return _click_events(_frames_channels(x), rate)


def _click_events(a: np.ndarray, rate: int) -> np.ndarray:
    n = a.shape[0]
    block = max(8, int(round(CLICK_BLOCK_S * rate)))
    if n < 3 * block:
        return np.zeros(0, dtype=np.int64)
    sos = butter(4, min(CLICK_HIGHPASS_HZ, 0.4 * rate), btype="highpass", fs=rate, output="sos")
    full = n // block * block
    outlier = np.zeros(n, dtype=bool)  # beyond CLICK_THRESHOLD local scales on some channel
    level = np.zeros(n, dtype=np.float32)  # |high-passed signal|, the largest over channels
    for c in range(a.shape[1]):
        y = np.abs(sosfilt(sos, a[:, c]).astype(np.float32))
        sigma = np.partition(y[:full].reshape(-1, block), block // 2, axis=1)[
            :, block // 2
        ]  # median |y| per block
        if full < n:
            sigma = np.r_[sigma, np.median(y[full:])]
        sigma /= 0.6745
        # The scale at a block is the largest of it and its two neighbours: a musical attack (broadband,
        # tens of ms) lifts the median of the blocks it spans, and the max carries that to its onset; a
        # click (well under a block) barely moves any median.
        local = np.maximum(sigma, np.maximum(np.r_[sigma[0], sigma[:-1]], np.r_[sigma[1:], sigma[-1]]))
        limit = CLICK_THRESHOLD * np.maximum(local, CLICK_SCALE_FLOOR).astype(np.float32)
        outlier |= y > np.repeat(limit, block)[:n]
        np.maximum(level, y, out=level)
    hits = np.flatnonzero(outlier)
    if hits.size == 0:
        return hits
    first = np.r_[0, np.flatnonzero(np.diff(hits) > CLICK_MERGE_S * rate) + 1]
    start, end = hits[first], hits[np.r_[first[1:], hits.size] - 1]
    peak = np.maximum.reduceat(level[hits], first)
    # Comparable peaks (above peak / CLICK_PEAK_RATIO) around an event, in 1 ms blocks: "near" = 1-16 ms from
    # its edges, "far" = the 15 ms beyond. A pulse train (the glottal pulses of a voice, a buzz) has them on
    # both sides, or near and far on one side at its first and last pulse; a random click seldom does.
    b = max(1, int(round(0.001 * rate)))
    span = CLICK_NEIGHBOUR_BLOCKS
    nb = -(-n // b)
    pad = 2 * span + 2
    bmax = np.pad(np.pad(level, (0, nb * b - n)).reshape(nb, b).max(axis=1), (pad, pad))
    window = sliding_window_view(bmax, span).max(axis=1)  # window[i] = max(bmax[i:i + span])
    s, e = start // b + pad, end // b + pad
    comparable = peak / CLICK_PEAK_RATIO
    left_near, left_far = window[s - 1 - span] > comparable, window[s - 1 - 2 * span] > comparable
    right_near, right_far = window[e + 2] > comparable, window[e + 2 + span] > comparable
    train = (left_near & right_near) | (left_near & left_far) | (right_near & right_far)
    short = (end - start) <= CLICK_MAX_EVENT_S * rate
    return start[short & ~train]


def click_rate(x: np.ndarray, rate: int) -> float:
    """Clicks (impulsive events) per second.

    A click is broadband and far shorter than anything a voice or an instrument plays, so it is sought
    where music and speech are weak: in the signal high-passed at 3 kHz (4th-order Butterworth; 0.4 x the
    rate below 7.5 kHz), against a robust local scale — the median absolute value of each 5 ms block /
    0.6745 (a MAD: a click filling a few samples of the block cannot lift it), taken as the largest of the
    block and its two neighbours (so the onset of an attack is judged against the attack). Samples beyond
    6 scales are outliers (steady Gaussian noise: ~2e-9 per sample, no false clicks in 3 minutes of
    stereo); outliers under 1 ms apart are one event. An event is a click when it

    * lasts at most 5 ms: longer bursts are attacks (a struck or plucked onset, a consonant), and
    * stands out: no peak above half its own within 1-16 ms on both sides, nor within 1-16 ms and 16-31 ms
      on one side. Glottal pulses of voiced speech, a buzz or a rolled note are pulse trains with such
      neighbours (their first and last pulse included); a random click seldom has them.

    Channels are searched separately; a click on any channel counts once.

    Limits (docs/measurements.md has the figures): dense crackle (a click every few ms) lifts the scale and
    reads as a few clicks per second (it is noise, which the noise floor measures); clicks under 1 ms apart
    count once and two similar ones under ~16 ms apart not at all; faint clicks under loud speech are
    missed; a very sharp isolated percussive attack on a quiet background can count.
    """
    a = _frames_channels(x)
    return float(_click_events(a, rate).size / (a.shape[0] / rate))


def level_change_db(before: np.ndarray, after: np.ndarray) -> float:
    """RMS level of ``after`` relative to ``before`` in dB (channels pooled by power; each level clamped at
    -120 dBFS)."""
    return _db(_mean_power(_frames_channels(after))) - _db(_mean_power(_frames_channels(before)))


def band_name(low: float, high: float | None) -> str:
    """``(2000, 6000)`` -> ``"2k_6k"``, ``(6000, None)`` -> ``"6k_nyq"``."""

    def fmt(f):
        return "nyq" if f is None else (f"{f / 1000:g}k" if f >= 1000 else f"{f:g}")

    return f"{fmt(low)}_{fmt(high)}"


def _power_spectrum(a: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Welch power spectrum summed over channels: Hann segments of ~0.1 s (~10 Hz bins), half overlapping,
    the channel's mean (DC) removed. Unnormalised (a mean over segments): only ratios between spectra are
    used."""
    nperseg = min(a.shape[0], 1 << int(math.ceil(math.log2(rate / 10.0))))
    hop = max(1, nperseg // 2)
    window = np.hanning(nperseg).astype(np.float32)
    acc = np.zeros(nperseg // 2 + 1)
    for c in range(a.shape[1]):
        column = a[:, c].astype(np.float32)
        column -= column.mean(dtype=np.float64)
        spectra = sfft.rfft(sliding_window_view(column, nperseg)[::hop] * window, axis=1)
        acc += np.einsum("ij,ij->j", spectra.real, spectra.real) + np.einsum(
            "ij,ij->j", spectra.imag, spectra.imag
        )
    return sfft.rfftfreq(nperseg, 1.0 / rate), acc / max(1, spectra.shape[0])


def _band_powers(a: np.ndarray, rate: int, bands) -> tuple[dict[str, float], float]:
    freqs, psd = _power_spectrum(a, rate)
    nyquist = rate / 2.0
    out = {}
    for low, high in bands:
        if low >= nyquist:
            continue
        top = nyquist if high is None else min(high, nyquist)
        inside = (freqs >= low) & ((freqs < top) if top < nyquist else (freqs <= top))
        out[band_name(low, high)] = float(psd[inside].sum())
    return out, float(psd.sum())


def band_energy_removed(before: np.ndarray, after: np.ndarray, rate: int, bands=BANDS) -> dict[str, float]:
    """Share of the input's energy removed per band: ``1 - P_after / P_before`` in each band.

    1.0 = the band was emptied, 0.0 = untouched, negative = energy was *added* (-1.0: the band's energy
    doubled), e.g. by a bandwidth extension or a resonance. Bands are ``(low, high)`` in Hz (``high`` None =
    Nyquist; keys by :func:`band_name`); a band starting at or above Nyquist is left out, one straddling it
    ends there. Power spectra are Welch averages (Hann, ~10 Hz bins, DC removed) summed over channels and
    averaged over segments, so signals of slightly different lengths compare fairly. A band that holds under
    1e-10 of the input's power has nothing to remove and reads NaN.
    """
    return _removed(_frames_channels(before), _frames_channels(after), rate, bands)


def _removed(b: np.ndarray, a: np.ndarray, rate: int, bands=BANDS) -> dict[str, float]:
    p_before, total = _band_powers(b, rate, bands)
    p_after, _ = _band_powers(a, rate, bands)
    return {
        k: (1.0 - p_after[k] / v if v > _BAND_EMPTY * total and v > 0 else math.nan)
        for k, v in p_before.items()
    }


def figures(
    before: np.ndarray, after: np.ndarray, rate: int, content: str | None = None, dnsmos: bool = True
) -> dict[str, float]:
    """All reference-free figures of one restoration, in one flat dict (keys in the module docstring).

    ``content`` is the clip's label ("speech", "music", None = unknown): DNSMOS is computed for speech and for
    unlabelled clips (the suite's rule, :func:`lightning_app.metrics.perceptual.speech_content`), never for
    music. Raises ValueError on an empty or non-finite signal; a DNSMOS failure is NaN with a logged reason.
    """
    b, a = _frames_channels(before), _frames_channels(after)
    out = {"noise_floor_db_before": _noise_floor(b, rate), "noise_floor_db_after": _noise_floor(a, rate)}
    out["noise_floor_change_db"] = out["noise_floor_db_after"] - out["noise_floor_db_before"]
    out["click_rate_before"] = _click_events(b, rate).size / (b.shape[0] / rate)
    out["click_rate_after"] = _click_events(a, rate).size / (a.shape[0] / rate)
    out["level_db_before"], out["level_db_after"] = _db(_mean_power(b)), _db(_mean_power(a))
    out["level_change_db"] = out["level_db_after"] - out["level_db_before"]
    out.update({f"removed_{k}": v for k, v in _removed(b, a, rate).items()})
    reason = D.skip_reason(content) if dnsmos else "DNSMOS not asked for"
    if dnsmos and reason:  # a caller that scores DNSMOS its own way (the listening report) asked for none
        log.info("DNSMOS skipped: %s", reason)
    for when, signal in (("before", before), ("after", after)):
        scores = D.nan_scores() if reason else D.dnsmos(signal, rate)
        out.update({f"{k}_{when}": v for k, v in scores.items()})
    return out
