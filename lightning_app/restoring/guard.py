"""The do-no-harm guard: hold back what a model removes where it does not look like noise.

At restore time no clean reference exists, but the input tells what its noise looks like. The guard
compares what the model removed (input - output) with two things the input shows, per frequency bin
and frame of a short-time spectrum:

- the noise floor: a low percentile over time of the input's (locally smoothed) power in that bin.
  Hiss, hum, rumble and surface noise sit there all the time; music and speech come and go above it.
  The model may remove up to ``floor_margin_db`` above the floor. Narrow-band noise (rumble below 80 Hz)
  wanders slowly in level, so its short frames dip far below its mean: the power is smoothed over several
  frames (``floor_frames``) before the percentile is taken. The removal, in turn, is judged by its mean
  over a few cells (``removal_cells``), since noise fluctuates from cell to cell about its floor;
- transients: a cell far above what the frames on either side of it hold (``transient_db``) is a click or
  a crackle burst, which the model may remove whole, however loud.

Anything the model removes beyond that allowance is put back, with the removal's own phase. Where
the model removed only floor-level noise and transients the guard changes nothing (the removal is
resynthesised from its own spectrum, exactly). The music the bundled model mistook for noise is
removed far above the floor and is not a transient: that is what comes back.

The guard looks at two resolutions in turn, and a removal must look like noise at both. At 23 ms the
bins are 43 Hz wide: clicks, crackle and speech onsets stand out in time, but a low note's partials
(50-200 Hz apart) blur into one band and, in sustained music, the "floor" of that band is music. At
186 ms the bins are 5.4 Hz wide: partials separate and the gaps between them show the noise, so the
long pass is the one that keeps sustained music. A gap must show on both sides of a bin, so that the
steep slope of rumble or brown noise is not taken for one. The short pass follows what changes faster
than the long window (speech, onsets) and lets clicks go whole; it has no neighbour rule, since in 43-Hz
bins a steep slope leaves no room for a gap on its far side.

``GuardedDenoiser`` wraps any denoiser the restore engine runs; ``guard_alone`` is the guard over a
model that removes everything (an ablation: what the guard's own noise estimate would take away).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


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

    def n_fft(self, sample_rate: int) -> int:
        return 1 << max(6, round(math.log2(self.window_seconds * sample_rate)))


#: The passes the guard makes by default, in order (tuned on the corpus's val split and the procedural val
#: stream): long windows that resolve partials first (a thump or a crackle burst fills a long frame less, so a
#: lower step above the surroundings marks it), then short windows without the neighbour rule. In both the
#: removal is judged by its local mean over 7 x 7 cells, and the floor by power smoothed over several frames.
DEFAULT_PASSES = (
    GuardSettings(
        window_seconds=0.186,
        neighbour_bins=16,
        neighbour_sides=True,
        transient_db=12.0,
        floor_frames=5,
        floor_margin_db=8.0,
        removal_cells=7,
    ),
    GuardSettings(
        window_seconds=0.023, neighbour_bins=0, floor_frames=7, floor_margin_db=10.0, removal_cells=7
    ),
)


def _power(spectrum: torch.Tensor) -> torch.Tensor:
    return spectrum.real.square() + spectrum.imag.square()


def box_mean(values: torch.Tensor, bins: int, frames: int) -> torch.Tensor:
    """Mean of each cell's ``bins`` x ``frames`` neighbourhood (odd sizes; cut at the edges) of a (batch,
    bins, frames) tensor of powers. A box is separable, and each 1-D mean is a difference of running sums
    (in double precision: a spectrum spans far more than float32 can subtract), so its cost does not grow
    with the box."""

    def along_last(x: torch.Tensor, size: int) -> torch.Tensor:
        if size <= 1:
            return x
        n, half = x.shape[-1], size // 2
        sums = x.double().cumsum(-1)
        # running sums with `half` zeros before (the box's start clipped at 0) and the total repeated after
        rows = sums.shape[:-1]
        sums = torch.cat([sums.new_zeros(*rows, half + 1), sums, sums[..., -1:].expand(*rows, half)], -1)
        index = torch.arange(n, device=x.device, dtype=torch.float64)
        count = (index + half + 1).clamp(max=n) - (index - half).clamp(min=0)
        return ((sums[..., 2 * half + 1 :] - sums[..., :n]) / count).clamp_min(0.0).to(x.dtype)

    return along_last(along_last(values, frames).transpose(1, 2), bins).transpose(1, 2)


class GuardPass:
    """One resolution of the guard: ``guard_pass(x, removed)`` -> the part of ``removed`` that looks like
    noise in ``x``'s short-time spectrum at this pass's window; (batch, time) float tensors."""

    def __init__(self, sample_rate: int, settings: GuardSettings):
        self.settings = settings
        self.n_fft = settings.n_fft(sample_rate)
        self.hop = (
            self.n_fft // 2
        )  # hann at half overlap resynthesises exactly, at half the cost of a quarter
        self._windows: dict = {}

    def _window(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.device, x.dtype)
        if key not in self._windows:
            self._windows[key] = torch.hann_window(self.n_fft, device=x.device, dtype=x.dtype)
        return self._windows[key]

    def _stft(self, x: torch.Tensor) -> torch.Tensor:
        window = self._window(x)
        return torch.stft(x, self.n_fft, self.hop, window=window, center=True, return_complex=True)

    def allowance(self, spectrum: torch.Tensor) -> torch.Tensor:
        """Magnitude the model may remove in each cell of the input's spectrum (batch, bins, frames)."""
        s = self.settings
        power = _power(spectrum)
        smooth = box_mean(power, 3, s.floor_frames)
        frames = smooth.shape[-1]
        low = smooth.kthvalue(max(1, round(s.floor_percentile * frames)), dim=-1, keepdim=True).values
        high = smooth.kthvalue(max(1, round(0.9 * frames)), dim=-1, keepdim=True).values
        floor = low
        w = s.neighbour_bins
        if w > 0 and floor.shape[1] > 2 * w:
            # Music keeps sounding in its own bins but leaves gaps between its partials, where the noise
            # shows; noise is smooth across frequency. A bin that varies over time takes its
            # neighbourhood's low floor; a steady bin (hum, a constant whistle) keeps its own, so steady
            # lines stay removable.
            around = F.pad(floor[..., 0], (w, w), mode="replicate").unfold(-1, 2 * w + 1, 1)
            if s.neighbour_sides:
                # A partial has gaps on both sides; noise with a steep slope (rumble, brown) is quieter on
                # one side only. The quietest bin of each side, then the higher of the two: a slope keeps
                # about its own level, a partial still finds a gap on both sides, even beside a dense chord
                # on one.
                local = torch.maximum(around[..., :w].amin(-1), around[..., w + 1 :].amin(-1))[..., None]
            else:
                local = around.kthvalue(max(1, round(0.25 * (2 * w + 1))), dim=-1).values[..., None]
            steady = high <= low * 10 ** (s.steady_db / 10)
            floor = torch.where(steady, floor, torch.minimum(floor, local))
        allowed = torch.sqrt(floor * 10 ** (s.floor_margin_db / 10))
        magnitude = power.sqrt()
        k = s.transient_frames
        if k > 0 and magnitude.shape[-1] > 2 * k:
            # What the cell's surroundings hold: the larger of the mean of the k frames before it and of the
            # k after, leaving out the frame next to it on each side (at half overlap a click sounds in two
            # frames). A click is short, so both are low; a note's onset has its note after it, its release
            # before.
            padded = F.pad(magnitude, (k + 1, k + 1), mode="replicate")
            means = F.avg_pool1d(padded.flatten(0, 1)[:, None], k, stride=1)[:, 0].unflatten(
                0, padded.shape[:2]
            )
            frames = magnitude.shape[-1]
            typical = torch.maximum(means[..., :frames], means[..., k + 3 : k + 3 + frames])
            transient = (magnitude > typical * 10 ** (s.transient_db / 20)).float()
            # A click near a frame's edge shows weakly in that frame: the frames beside a transient share it.
            transient = F.max_pool1d(transient.flatten(0, 1)[:, None], 3, stride=1, padding=1)[:, 0]
            transient = transient.unflatten(0, magnitude.shape[:2]) > 0
            # a transient may go whole: all of it above its surroundings
            allowed = allowed + torch.where(transient, F.relu(magnitude - typical), 0.0)
        return allowed

    def __call__(self, x: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        if (
            length < self.n_fft
        ):  # too short to tell noise from signal at this resolution: nothing is held back
            return removed
        removal = self._stft(removed)
        # Noise the model removes is Rayleigh-distributed cell by cell (a tenth of its cells lie 3.6 dB above
        # its mean); the floor describes its mean. Its local mean over removal_cells, not each cell, is what
        # is compared.
        r = self.settings.removal_cells
        level = box_mean(_power(removal), r, r).sqrt()
        keep = torch.clamp(self.allowance(self._stft(x)) / level.clamp_min(1e-12), max=1.0)
        return torch.istft(
            removal * keep, self.n_fft, self.hop, window=self._window(x), center=True, length=length
        )


class Guard:
    """``guard(x, y)`` -> y with the removal x - y held back where it is not noise; (batch, 1, time) tensors.
    ``settings``: one pass or several, made in order (default ``DEFAULT_PASSES``)."""

    def __init__(self, sample_rate: int, settings: GuardSettings | tuple[GuardSettings, ...] | None = None):
        if settings is None:
            settings = DEFAULT_PASSES
        self.settings = (settings,) if isinstance(settings, GuardSettings) else tuple(settings)
        self.passes = [GuardPass(sample_rate, s) for s in self.settings]
        self.removed = 0.0  # energy the model removed, summed over calls
        self.restored = 0.0  # energy of what the guard put back

    def reset(self) -> None:
        self.removed = self.restored = 0.0

    @property
    def share_restored(self) -> float:
        """Share of the removed energy the guard put back since the last reset (0: it changed nothing)."""
        return self.restored / self.removed if self.removed > 0 else 0.0

    def __call__(self, noisy: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
        shape, length = noisy.shape, noisy.shape[-1]
        x = noisy.reshape(-1, length).float()
        removed = x - denoised.reshape(-1, length).float()
        guarded = removed
        for guard_pass in self.passes:
            guarded = guard_pass(x, guarded)
        if guarded is removed:  # every pass was too short to judge: the model's output as it is
            return denoised
        self.removed += float(removed.square().sum())
        self.restored += float((removed - guarded).square().sum())
        return (x - guarded).reshape(shape).to(denoised.dtype)


class GuardedDenoiser(nn.Module):
    """A denoiser whose every output passes the guard; the restore engine runs it like the model itself."""

    def __init__(self, model: nn.Module, settings: GuardSettings | tuple[GuardSettings, ...] | None = None):
        super().__init__()
        self.model = model
        self.sample_rate = int(model.sample_rate)
        self.kind = getattr(model, "kind", "")
        self.card = getattr(model, "card", {})
        self.guard = Guard(self.sample_rate, settings)

    def enhance(self, noisy: torch.Tensor) -> torch.Tensor:
        return self.guard(noisy, self.model.enhance(noisy))

    forward = enhance


class _RemoveEverything(nn.Module):
    """A stand-in model that removes the whole input (its output is silence)."""

    def __init__(self, sample_rate: int):
        super().__init__()
        self.sample_rate = sample_rate
        self.anchor = nn.Parameter(torch.zeros(()), requires_grad=False)  # gives the engine a device

    def enhance(self, noisy: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(noisy)


def guard_alone(
    sample_rate: int, settings: GuardSettings | tuple[GuardSettings, ...] | None = None
) -> GuardedDenoiser:
    """The guard over a model that removes everything: it takes away floor-level noise and transients only."""
    return GuardedDenoiser(_RemoveEverything(sample_rate), settings)
