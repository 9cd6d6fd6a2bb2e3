"""The do-no-harm guard: hold back what a model removes where it does not look like noise.

At restore time no clean reference exists, but the input tells what its noise looks like. The guard
compares what the model removed (input - output) with two things the input shows, per frequency bin
and frame of a short-time spectrum:

- the noise floor: a low percentile over time of the input's (locally smoothed) power in that bin.
  Hiss, hum, rumble and surface noise sit there all the time; music and speech come and go above it.
  The model may remove up to ``floor_margin_db`` above the floor. Narrow-band noise (rumble below 80 Hz)
  wanders slowly in level, so its short frames dip far below its mean: the power is smoothed over several
  frames (``floor_frames``) before the percentile is taken. The removal, in turn, is judged by its mean
  over a few cells (``removal_cells``), since noise fluctuates from cell to cell about its floor. Where the
  input stands far above the floor (``loud_db``) the margin is smaller: the noise under a loud partial is
  still at the floor, so a removal well above it there is the partial thinned;
- transients: a cell far above what the frames on either side of it hold (``transient_db``) is a click or
  a crackle burst, which the model may remove whole, however loud. In 23-ms frames a hi-hat or a clap looks
  the same, so above ``whole_above_hz`` a transient goes only as far as the model took it whole: a model
  knows a click and removes all of it; one that thins a bright hit by a third was unsure, and the hit comes
  back.

Anything the model removes beyond that allowance is put back, with the removal's own phase. Where
the model removed only floor-level noise and transients the guard changes nothing: the model's output is
returned as it is, and where a chunk holds some cells back only the frames that hold them are
resynthesised. The music the bundled model mistook for noise is removed far above the floor and is not a
transient: that is what comes back.

The guard looks at two resolutions in turn, and a removal must look like noise at both. At 23 ms the
bins are 43 Hz wide: clicks, crackle and speech onsets stand out in time, but a low note's partials
(50-200 Hz apart) blur into one band and, in sustained music, the "floor" of that band is music. At
186 ms the bins are 5.4 Hz wide: partials separate and the gaps between them show the noise, so the
long pass is the one that keeps sustained music. A gap must show on both sides of a bin, so that the
steep slope of rumble or brown noise is not taken for one. The short pass follows what changes faster
than the long window (speech, onsets) and lets clicks go whole; it has no neighbour rule, since in 43-Hz
bins a steep slope leaves no room for a gap on its far side.

Before either pass, clicks the model removed whole are let go (``ClickSettings``). Over dense music a click is
only a few dB above the notes in its 23-ms cells, so the input shows no transient there and the passes put it
back. The removal shows it instead: a click's 0.3-3 ms ring fills one or two frames of 5.8 ms, where what the
model removed stands far above what it removed just before and after, across most of 1-8 kHz, and is nearly
all the input held there. A drum or a voice is longer than that, and a bright hit the model only thinned is
not taken whole: both stay with the passes.

``GuardedDenoiser`` wraps any network the restore engine runs (restoring/networks.py); ``guard_alone`` is
the guard over a model that removes everything (an ablation: what the guard's own noise estimate would take
away). numpy only: both restore engines, torch and ONNX Runtime, run this one guard.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from lightning_app.data.dsp import resynthesis, spectrogram


@dataclass(frozen=True)
class GuardSettings:
    window_seconds: float = 0.023  # short-time spectrum window (1024 samples at 44.1 kHz), hop a half
    floor_percentile: float = 0.05  # of each bin's smoothed power over the chunk: the noise floor
    floor_frames: int = 3  # the power is smoothed over 3 bins and this many frames before the percentile
    floor_margin_db: float = 6.0  # removal allowed up to this far above the floor
    removal_cells: int = 1  # the removal's power is averaged over this many bins and frames
    transient_db: float = 18.0  # a cell this far above its surroundings in time is a transient
    transient_frames: int = 4  # frames on each side that make its surroundings
    steady_db: float = 3.0  # a bin whose power spreads less than this over time is steady noise
    neighbour_bins: int = 8  # other bins: the floor is the low part of their neighbourhood's floors
    neighbour_sides: bool = False  # the neighbourhood's floor: the higher of its sides' quietest bins
    # Above this frequency a transient may go only as far as the model took it whole: a click the model knows
    # it removes outright; a drum hit it only thins is music it was unsure of. whole_share: the share of the
    # input cell's magnitude removed that leaves a transient no room, and the share that leaves it all.
    whole_above_hz: float = math.inf
    whole_share: tuple[float, float] = (0.8, 0.95)
    # A click is broadband: in a frame where more than this share of the bins of click_band_hz hold a
    # transient too, the rule above does not apply (a hit of bright percussion sounds above the band only).
    click_band_hz: tuple[float, float] = (200.0, 2000.0)
    click_band_share: float = 0.05
    # Where the input stands far above its floor, music or a voice fills the cell and the noise in it is still
    # about the floor: a model that removes noise there removes about the floor's level, and what it removes
    # beyond is the sound it thinned. Near the floor the removal is noise, whose level wanders, and needs the
    # whole margin. The margin falls from floor_margin_db, where the input's local mean (over removal_cells)
    # stands loud_db[0] above the floor, to loud_margin_db from loud_db[1] up (None: the whole margin
    # everywhere).
    loud_db: tuple[float, float] | None = None
    loud_margin_db: float = 3.0

    def __post_init__(self):
        if self.loud_db is not None and not (
            self.loud_db[0] < self.loud_db[1] and self.loud_margin_db <= self.floor_margin_db
        ):
            raise ValueError(
                f"loud_db must rise and loud_margin_db stay within floor_margin_db, got {self.loud_db} and "
                f"{self.loud_margin_db:g} dB"
            )

    def n_fft(self, sample_rate: int) -> int:
        return 1 << max(6, round(math.log2(self.window_seconds * sample_rate)))


#: The passes the guard makes by default, in order (tuned on the corpus's val split and the procedural val
#: stream): long windows that resolve partials first (a thump or a crackle burst fills a long frame less, so a
#: lower step above the surroundings marks it), then short windows without the neighbour rule. In both the
#: removal is judged by its local mean over 7 x 7 cells, and the floor by power smoothed over several frames.
#: In the short pass a transient above 4 kHz goes only where the model took it whole: at 23 ms a hi-hat or a
#: clap looks like a click, and the model thinned such hits in the val split's worst music clip.
#: In the long pass the margin falls from 8 dB where the input stands 12 dB above its floor to 3 dB from 24 dB
#: up: in 5.4-Hz bins a loud partial leaves its noise at the floor, and the model had thinned sustained bass
#: lines there to 6-7 dB over the noise. Tried on the short pass as well, the rule lowered val music (+4.818
#: against +4.840 dB), so that pass keeps its whole margin.
DEFAULT_PASSES = (
    GuardSettings(
        window_seconds=0.186,
        neighbour_bins=16,
        neighbour_sides=True,
        transient_db=12.0,
        floor_frames=5,
        floor_margin_db=8.0,
        removal_cells=7,
        loud_db=(12.0, 24.0),
        loud_margin_db=3.0,
    ),
    GuardSettings(
        window_seconds=0.023,
        neighbour_bins=0,
        floor_frames=7,
        floor_margin_db=10.0,
        removal_cells=7,
        whole_above_hz=4000.0,
    ),
)


@dataclass(frozen=True)
class ClickSettings:
    """Which part of a removal the guard lets go as clicks before its passes (tuned on the corpus's val
    split)."""

    window_seconds: float = 0.0058  # 256 samples at 44.1 kHz: a click's ring fills one or two, a drum several
    removal_db: float = 8.0  # a cell of the removal this far above the removal around it (as transient_db)
    frames: int = 4  # frames on each side that make its surroundings (as transient_frames)
    band_hz: tuple[float, float] = (1000.0, 8000.0)  # a click is broadband: it stands out across this band
    band_share: float = 0.3  # ... in more than this share of the band's bins
    # How much of the input cell's magnitude the model took (1 - what the output keeps of it) that lets no
    # part of a cell go, and that lets it all go: a model that removes a click takes all of it; one that thins
    # a hit was unsure of it.
    whole_share: tuple[float, float] = (0.8, 0.95)


def _power(spectrum: np.ndarray) -> np.ndarray:
    return spectrum.real**2 + spectrum.imag**2


def _sliding_sum(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Sums of every ``size`` consecutive values along ``axis`` (len - size + 1 of them). The windows are a
    few cells wide, so shifted adds beat running sums, and doubling needs fewer of them: sums of 2 values,
    then of 4, ..., and a window is put together from those its size is made of (7 = 4 + 2 + 1: four adds,
    not six). With no running total nothing large is subtracted, so float32 keeps its precision however far a
    spectrum spans."""
    axis = axis % x.ndim
    n, before = x.shape[axis] - size + 1, (slice(None),) * axis

    def part(values: np.ndarray, start: int) -> np.ndarray:
        return values[(*before, slice(start, start + n))]

    total, done, sums, width = None, 0, x, 1
    while True:
        # Is this power of two part of the size? Then its sums are added, from where the last part ended.
        if size & width:
            total = part(sums, done).copy() if total is None else np.add(total, part(sums, done), out=total)
            done += width
        if 2 * width > size:
            return total
        tail = sums.shape[axis] - width
        sums = sums[(*before, slice(0, tail))] + sums[(*before, slice(width, width + tail))]
        width *= 2


def _window_sum(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Sum of each value's ``size`` neighbours along ``axis`` (odd size; zeros beyond the ends)."""
    widths = [(0, 0)] * x.ndim
    widths[axis] = (size // 2, size // 2)
    return _sliding_sum(np.pad(x, widths), size, axis)


def _running_mean(x: np.ndarray, size: int, axis: int = -1) -> np.ndarray:
    """Mean of each value's ``size`` neighbours along ``axis`` (odd size; the window cut at the ends)."""
    if size <= 1:
        return x
    axis = axis % x.ndim
    n, half = x.shape[axis], size // 2
    index = np.arange(n)
    count = (np.minimum(index + half + 1, n) - np.maximum(index - half, 0)).astype(x.dtype)
    shape = [1] * x.ndim
    shape[axis] = n
    return _window_sum(x, size, axis) / count.reshape(shape)


def box_mean(values: np.ndarray, bins: int, frames: int) -> np.ndarray:
    """Mean of each cell's ``bins`` x ``frames`` neighbourhood (odd sizes; cut at the edges) of a (batch,
    bins, frames) array of powers; a box is separable, so two running means."""
    return _running_mean(_running_mean(values, frames, axis=-1), bins, axis=-2)


def _kth_smallest(values: np.ndarray, k: int) -> np.ndarray:
    """The k-th smallest (1-based) along the last axis, kept as an axis of length one. (One partition for two
    k far apart, e.g. the 5th and 90th percentiles, takes three times as long as two.)"""
    return np.partition(values, k - 1, axis=-1)[..., k - 1 : k]


def _moving_mean(x: np.ndarray, size: int) -> np.ndarray:
    """Means of every ``size`` consecutive values along the last axis (len - size + 1 of them)."""
    return _sliding_sum(x, size, -1) / np.float32(size)


def _whole_ramp(share: np.ndarray, whole_share: tuple[float, float]) -> np.ndarray:
    """0..1 as the share of an input cell the model took rises through ``whole_share``: none of a cell's room
    below its low end, all of it from its high end."""
    low, high = whole_share
    return np.clip((share - low) / max(high - low, 1e-6), 0.0, 1.0)


class GuardPass:
    """One resolution of the guard: ``guard_pass(x, removed)`` -> the part of ``removed`` that looks like
    noise in ``x``'s short-time spectrum at this pass's window; (batch, time) float32 arrays."""

    #: When fewer than this share of all cells may be held back (their removal is over the floor), those cells
    #: are gathered and judged alone; otherwise every cell is judged at once. The result is the same; at about
    #: 3 % both take the same time.
    gather_below = 1 / 32

    def __init__(self, sample_rate: int, settings: GuardSettings):
        self.settings = settings
        self.n_fft = settings.n_fft(sample_rate)
        self.hop = (
            self.n_fft // 2
        )  # hann at half overlap resynthesises exactly, at half the cost of a quarter
        # the first bin where a transient must be taken whole to go (past the last bin: the rule is off)
        above = settings.whole_above_hz * self.n_fft / sample_rate
        self.first_whole_bin = math.ceil(above) if above <= self.n_fft else self.n_fft
        self.click_bins = slice(*(math.ceil(hz * self.n_fft / sample_rate) for hz in settings.click_band_hz))

    def stft(self, x: np.ndarray) -> np.ndarray:
        return spectrogram(x, self.n_fft, self.hop, pad_mode="reflect")

    def noise_floor(self, power: np.ndarray) -> np.ndarray:
        """The noise floor's power in each bin of the input's power spectrum (batch, bins, frames): (batch,
        bins, 1)."""
        s = self.settings
        smooth = box_mean(power, 3, s.floor_frames)
        frames = smooth.shape[-1]
        low = _kth_smallest(smooth, max(1, round(s.floor_percentile * frames)))
        high = _kth_smallest(smooth, max(1, round(0.9 * frames)))
        floor = low
        w = s.neighbour_bins
        if w > 0 and floor.shape[1] > 2 * w:
            # Music keeps sounding in its own bins but leaves gaps between its partials, where the noise
            # shows; noise is smooth across frequency. A bin that varies over time takes its
            # neighbourhood's low floor; a steady bin (hum, a constant whistle) keeps its own, so steady
            # lines stay removable.
            around = sliding_window_view(np.pad(floor[..., 0], ((0, 0), (w, w)), mode="edge"), 2 * w + 1, -1)
            if s.neighbour_sides:
                # A partial has gaps on both sides; noise with a steep slope (rumble, brown) is quieter on
                # one side only. The quietest bin of each side, then the higher of the two: a slope keeps
                # about its own level, a partial still finds a gap on both sides, even beside a dense chord
                # on one.
                local = np.maximum(around[..., :w].min(-1), around[..., w + 1 :].min(-1))[..., None]
            else:
                local = _kth_smallest(around, max(1, round(0.25 * (2 * w + 1))))
            steady = high <= low * 10 ** (s.steady_db / 10)
            floor = np.where(steady, floor, np.minimum(floor, local))
        return floor

    def floor_allowance(self, power: np.ndarray) -> np.ndarray:
        """Magnitude the model may remove in each bin by the noise floor: (batch, bins, 1)."""
        return np.sqrt(self.noise_floor(power) * 10 ** (self.settings.floor_margin_db / 10))

    def loud_allowance(self, power: np.ndarray, floor: np.ndarray) -> np.ndarray:
        """Magnitude the model may remove in each cell by the noise ``floor`` (batch, bins, 1), the margin
        falling where the input is loud (``loud_db``): (batch, bins, frames)."""
        s = self.settings
        r, (low, high) = s.removal_cells, s.loud_db
        above_db = 10 * np.log10(np.maximum(box_mean(power, r, r), 1e-30) / np.maximum(floor, 1e-30))
        loudness = np.clip((above_db - low) / (high - low), 0.0, 1.0)
        margin_db = s.floor_margin_db - (s.floor_margin_db - s.loud_margin_db) * loudness
        return np.sqrt(floor * 10 ** (margin_db / 10)).astype(np.float32)

    def transient_allowance(
        self, spectrum: np.ndarray, cells: tuple[np.ndarray, ...] | None = None
    ) -> np.ndarray | float:
        """Magnitude the model may remove beyond the floor because a cell is a transient (all of it above
        its surroundings), at ``cells`` (index arrays into the input's spectrum) or, without them, at every
        cell."""
        k, frames = self.settings.transient_frames, spectrum.shape[-1]
        if k <= 0 or frames <= 2 * k:
            return 0.0
        # Each cell's frame and its surroundings, k + 2 frames each way, the end frames repeated beyond the
        # ends: for every cell at once (n = frames), or gathered for the few cells asked (n = 1).
        if cells is None:
            around = np.pad(np.sqrt(_power(spectrum)), ((0, 0), (0, 0), (k + 2, k + 2)), mode="edge")
            n = frames
        else:
            *rows, t = cells
            span = np.clip(t[:, None] + np.arange(-k - 2, k + 3), 0, frames - 1)
            around = np.sqrt(_power(spectrum[(*(r[:, None] for r in rows), span)]))
            n = 1
        # What a frame's surroundings hold: the larger of the mean of the k frames before it and of the k
        # after, leaving out the frame next to it on each side (at half overlap a click sounds in two frames).
        # A click is short, so both are low; a note's onset has its note after it, its release before. Worked
        # out for the cell's frame and the frame on either side.
        means = _moving_mean(around, k)
        typical = np.maximum(means[..., : n + 2], means[..., k + 3 : k + 5 + n])
        sound = around[..., k + 1 : k + 3 + n]
        found = sound > typical * 10 ** (self.settings.transient_db / 20)
        # A click near a frame's edge shows weakly in that frame: the frames beside a transient share it. (A
        # frame beyond the ends repeats the end frame, which its own surroundings then hold: never found.)
        transient = found[..., 1 : n + 1] | found[..., :n] | found[..., 2:]
        extra = np.where(transient, np.maximum(sound[..., 1 : n + 1] - typical[..., 1 : n + 1], 0.0), 0.0)
        return extra if cells is None else extra[:, 0]

    def click_frames(self, band_room: np.ndarray) -> np.ndarray:
        """(batch, frames): the frames where a transient sounds in ``click_band_hz`` too, as a click does;
        ``band_room``: ``transient_allowance`` of the bins of that band, (batch, bins, frames)."""
        if band_room.shape[1] == 0:  # the model's band stops below it
            return np.zeros((band_room.shape[0], band_room.shape[-1]), dtype=bool)
        return (band_room > 0).mean(axis=1) > self.settings.click_band_share

    def taken_whole(self, removal: np.ndarray, spectrum: np.ndarray) -> np.ndarray:
        """How much of its transient room a cell keeps (0..1) as the share of the input cell's magnitude the
        model removed rises through ``whole_share``."""
        share = np.sqrt(_power(removal) / np.maximum(_power(spectrum), 1e-30))
        return _whole_ramp(share, self.settings.whole_share)

    def transient_room(
        self, spectrum: np.ndarray, removal: np.ndarray, cells: tuple[np.ndarray, ...] | None = None
    ) -> np.ndarray | float:
        """``transient_allowance`` at ``cells`` (or every cell), cut above ``whole_above_hz`` where the model
        only thinned a transient that is not a click."""
        room = self.transient_allowance(spectrum, cells)
        if self.first_whole_bin >= spectrum.shape[-2] or np.isscalar(room):  # no such bins, or no room at all
            return room
        if cells is None:
            keeps = self.taken_whole(removal, spectrum)
            bins = np.arange(spectrum.shape[-2])[:, None]
        else:
            keeps = self.taken_whole(removal[cells], spectrum[cells])
            bins = cells[-2]
        cut = (bins >= self.first_whole_bin) & (keeps < 1.0) & (room > 0)
        if not cut.any():
            return room
        # Every cell's room, the band's among them, is at hand; gathered cells need the band's worked out.
        band_room = (
            room[:, self.click_bins]
            if cells is None
            else self.transient_allowance(spectrum[:, self.click_bins])
        )
        clicks = self.click_frames(band_room)
        clicks = clicks[:, None, :] if cells is None else clicks[cells[0], cells[-1]]
        return np.where(cut & ~clicks, room * keeps, room)

    def __call__(self, x: np.ndarray, removed: np.ndarray) -> np.ndarray:
        length = x.shape[-1]
        if length < self.n_fft:  # too short to tell noise from signal at this resolution: nothing held back
            return removed
        removal = self.stft(removed)
        # Noise the model removes is Rayleigh-distributed cell by cell (a tenth of its cells lie 3.6 dB above
        # its mean); the floor describes its mean. Its local mean over removal_cells, not each cell, is what
        # is compared.
        r = self.settings.removal_cells
        level = np.sqrt(box_mean(_power(removal), r, r))
        spectrum = self.stft(x)
        power = _power(spectrum)
        s = self.settings
        if s.loud_db is None:
            floor_allowed = self.floor_allowance(power)
        else:
            floor = self.noise_floor(power)
            if not np.any(level > np.sqrt(floor * 10 ** (s.loud_margin_db / 10))):
                return removed  # under even the loud cells' margin everywhere
            floor_allowed = self.loud_allowance(power, floor)
        # Only the cells the floor alone would hold back can be held back at all. Where the model removes
        # noise they are a small share, and the transient test and what is held back are worked out for them
        # alone; a model that removes much more than noise is judged cell by cell.
        over = level > floor_allowed
        count = np.count_nonzero(over)
        if count == 0:
            return removed
        if count < self.gather_below * over.size:
            cells = np.nonzero(over)
            floor_at = np.broadcast_to(floor_allowed, level.shape)[cells]
            allowed = floor_at + self.transient_room(spectrum, removal, cells)
            held = np.zeros(level.shape, dtype=np.float32)
            held[cells] = 1.0 - np.minimum(allowed / level[cells], 1.0)  # level > allowance >= 0 there
        else:
            allowed = floor_allowed + self.transient_room(spectrum, removal)
            held = np.where(over, 1.0 - np.minimum(allowed / np.maximum(level, 1e-12), 1.0), 0.0)
        # What is held back is resynthesised and taken from the removal (the same as resynthesising what is
        # let go, since the spectrum resynthesises exactly), from the frames that hold something back only.
        held_frames = np.flatnonzero(held.reshape(-1, held.shape[-1]).any(axis=0))
        if held_frames.size == 0:  # the transients took all the cells over the floor
            return removed
        if held_frames.size == held.shape[-1]:
            return removed - resynthesis(removal * held, self.n_fft, self.hop, length)
        put_back = removal[..., held_frames] * held[..., held_frames]
        return removed - resynthesis(put_back, self.n_fft, self.hop, length, frames=held_frames)


class ClickRelease:
    """``release(x, removed)`` -> the part of ``removed`` that is clicks the model took whole (None: none);
    (batch, time) float32 arrays. See ``ClickSettings``."""

    def __init__(self, sample_rate: int, settings: ClickSettings):
        self.settings = settings
        # A pass at the click window does the transforms, and its transient test, run on the removal instead
        # of the input, finds the cells that stand out of what the model removed around them.
        self.finder = GuardPass(
            sample_rate,
            GuardSettings(
                window_seconds=settings.window_seconds,
                transient_db=settings.removal_db,
                transient_frames=settings.frames,
            ),
        )
        n_fft = self.finder.n_fft
        self.band = slice(*(math.ceil(hz * n_fft / sample_rate) for hz in settings.band_hz))

    def __call__(self, x: np.ndarray, removed: np.ndarray) -> np.ndarray | None:
        finder = self.finder
        if x.shape[-1] < finder.n_fft:
            return None
        if self.band.start >= finder.n_fft // 2 + 1:  # the band lies above this rate's Nyquist
            return None
        removal = finder.stft(removed)
        stands_out = finder.transient_allowance(removal)
        if np.isscalar(stands_out):  # too few frames to have surroundings
            return None
        stands_out = stands_out > 0
        clicks = stands_out[:, self.band].mean(axis=1) > self.settings.band_share  # (batch, frames)
        if not clicks.any():
            return None
        # At half overlap a click sounds in the frames on either side of the one it stands out most in.
        near = clicks.copy()
        near[:, 1:] |= clicks[:, :-1]
        near[:, :-1] |= clicks[:, 1:]
        # Taken whole: the output keeps little of the input cell. Judged by what is kept, not by the size of
        # the removal, so that a click the model added (a removal larger than the input) is never let go.
        spectrum = finder.stft(x)
        kept = spectrum - removal
        share = 1.0 - np.sqrt(_power(kept) / np.maximum(_power(spectrum), 1e-30))
        let_go = (near[:, None, :] & stands_out) * _whole_ramp(share, self.settings.whole_share)
        frames = np.flatnonzero(let_go.reshape(-1, let_go.shape[-1]).any(axis=0))
        if frames.size == 0:
            return None
        part = removal[..., frames] * let_go[..., frames]
        return resynthesis(part, finder.n_fft, finder.hop, x.shape[-1], frames=frames)


class Guard:
    """``guard(x, y)`` -> y with the removal x - y held back where it is not noise; arrays of any shape whose
    last axis is time.
    ``settings``: one pass or several, made in order (default ``DEFAULT_PASSES``); ``clicks``: what is let go
    as clicks before them (None: nothing)."""

    def __init__(
        self,
        sample_rate: int,
        settings: GuardSettings | tuple[GuardSettings, ...] | None = None,
        clicks: ClickSettings | None = ClickSettings(),
    ):
        if settings is None:
            settings = DEFAULT_PASSES
        self.settings = (settings,) if isinstance(settings, GuardSettings) else tuple(settings)
        self.passes = [GuardPass(sample_rate, s) for s in self.settings]
        self.click_release = None if clicks is None else ClickRelease(sample_rate, clicks)
        self.removed = 0.0  # energy the model removed, summed over calls
        self.restored = 0.0  # energy of what the guard put back
        self._sums = threading.Lock()  # the restore engine guards channels in parallel threads

    def reset(self) -> None:
        self.removed = self.restored = 0.0

    @property
    def share_restored(self) -> float:
        """Share of the removed energy the guard put back since the last reset (0: it changed nothing)."""
        return self.restored / self.removed if self.removed > 0 else 0.0

    def __call__(self, noisy: np.ndarray, denoised: np.ndarray) -> np.ndarray:
        shape, length = np.shape(noisy), np.shape(noisy)[-1]
        if all(length < guard_pass.n_fft for guard_pass in self.passes):
            return denoised  # too short to judge at any resolution: the model's output as it is, uncounted
        x = np.asarray(noisy, dtype=np.float32).reshape(-1, length)
        removed = x - np.asarray(denoised, dtype=np.float32).reshape(-1, length)
        clicks = None if self.click_release is None else self.click_release(x, removed)
        rest = removed if clicks is None else removed - clicks  # what the passes judge
        guarded = rest
        for guard_pass in self.passes:
            guarded = guard_pass(x, guarded)
        removed_energy = float(np.sum(np.square(removed, dtype=np.float64)))
        nothing_held = guarded is rest  # every pass let the removal go whole
        if not nothing_held and clicks is not None:
            guarded = guarded + clicks
        restored_energy = (
            0.0 if nothing_held else float(np.sum(np.square(removed - guarded, dtype=np.float64)))
        )
        with self._sums:
            self.removed += removed_energy
            self.restored += restored_energy
        return denoised if nothing_held else (x - guarded).astype(np.float32).reshape(shape)


class GuardedDenoiser:
    """A network whose every output passes the guard; the restore engine runs it like the network itself."""

    def __init__(
        self,
        network,
        settings: GuardSettings | tuple[GuardSettings, ...] | None = None,
        clicks: ClickSettings | None = ClickSettings(),
    ):
        self.network = network
        self.sample_rate = int(network.sample_rate)
        self.guard = Guard(self.sample_rate, settings, clicks)

    def __getattr__(self, name: str):  # kind, card, engine, ...: the network's
        if name == "network":
            raise AttributeError(name)
        return getattr(self.network, name)

    def enhance(self, noisy: np.ndarray) -> np.ndarray:
        return self.guard(noisy, self.network.enhance(noisy))


class RemoveEverything:
    """A stand-in network that removes the whole input (its output is silence)."""

    engine = "none (removes everything)"
    batch_size = 2

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate

    def enhance(self, noisy: np.ndarray) -> np.ndarray:
        return np.zeros_like(noisy, dtype=np.float32)


def guard_alone(
    sample_rate: int,
    settings: GuardSettings | tuple[GuardSettings, ...] | None = None,
    clicks: ClickSettings | None = ClickSettings(),
) -> GuardedDenoiser:
    """The guard over a model that removes everything: it takes away floor-level noise and transients only."""
    return GuardedDenoiser(RemoveEverything(sample_rate), settings, clicks)
