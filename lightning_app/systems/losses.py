"""Loss terms, each ``fn(estimate, target) -> scalar`` (the INPUT_LOSSES also read the network's input);
systems combine them by config weight.

All terms are computed in float32 even under mixed precision: SI-SDR and log-spectra
lose too much in bf16.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from lightning_app.metrics.signal import EPS, flat, si_sdr, snr


def waveform_l1(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The research's MAE. On its own it rewards muting; see energy_preservation."""
    return F.l1_loss(flat(estimate), flat(target))


def neg_si_sdr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-SI-SDR / 10, so one unit is 10 dB and the term sits on the scale of the others."""
    return -si_sdr(estimate, target).mean() / 10.0


def neg_snr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-SNR / 10. Unlike SI-SDR it is not scale invariant, so it also pins the output level."""
    return -snr(estimate, target, torch.float32).mean() / 10.0


def energy_preservation(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """|log(RMS_est / RMS_target)|: zero when the level is kept, grows as the output is muted."""
    est, ref = flat(estimate), flat(target)
    ratio = (est.pow(2).mean(1) + EPS) / (ref.pow(2).mean(1) + EPS)
    return (0.5 * torch.log(ratio)).abs().mean()


def _magnitude(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    window = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(flat(x), n_fft, hop, window=window, center=True, return_complex=True)
    return spec.abs().clamp_min(1e-7)


LOG_FLOOR_DB = -80.0


def multi_resolution_stft(
    estimate: torch.Tensor, target: torch.Tensor, resolutions=((512, 128), (1024, 256), (256, 64))
) -> torch.Tensor:
    """Spectral convergence + log-magnitude L1, averaged over STFT resolutions.

    The log-magnitudes are floored 80 dB below each target's loudest bin: below that nothing is
    audible, and an absolute floor weighs differences in bins the target does not have at all
    (pauses; the band above a recording era's limit), where |log| is steepest. (Side by side on a
    short archive_fullband run the two floors scored alike: +1.91 against +1.87 dB.)
    """
    total = estimate.new_zeros((), dtype=torch.float32)
    for n_fft, hop in resolutions:
        est, ref = _magnitude(estimate, n_fft, hop), _magnitude(target, n_fft, hop)
        convergence = torch.linalg.vector_norm(ref - est, dim=(1, 2)) / (
            torch.linalg.vector_norm(ref, dim=(1, 2)) + EPS
        )
        floor = ref.detach().amax(dim=(1, 2), keepdim=True) * 10 ** (LOG_FLOOR_DB / 20)
        log_mag = ((ref + floor).log() - (est + floor).log()).abs().mean(dim=(1, 2))
        total = total + (convergence + log_mag).mean()
    return total / len(resolutions)


def no_harm(estimate: torch.Tensor, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """How far the output falls below its own input in SI-SDR, in units of 10 dB; 0 where it does not.

    The mean terms above let a model trade a few examples it makes worse for many it improves; on
    real music the rare examples it makes worse are the nearly clean ones an archivist cares for most.
    This hinge sees only those: an example the model improves costs nothing, one it harms costs
    its loss in dB, so the gradient goes where the harm is.
    """
    harm = si_sdr(source, target) - si_sdr(estimate, target)
    return harm.clamp_min(0.0).mean() / 10.0


BAND_HARM_FREE_DB = -35.0  # an error this far below a band's own signal costs nothing in band_no_harm


def band_no_harm(
    estimate: torch.Tensor, target: torch.Tensor, source: torch.Tensor, n_fft: int = 1024, bands: int = 24
) -> torch.Tensor:
    """How far the output's error rises above the input's noise, band by band, in units of 10 dB; 0 where
    no band is made worse.

    no_harm sees a whole example's SI-SDR, which the loudest band rules: a model can keep it while it
    takes the top octave of bright music for hiss, or bends a bass line that no noise touches, each
    20 dB below the music but far above the noise there. Here each log-spaced band (over the example;
    ``bands`` of them, fewer where the lowest would share a bin: 22 at 1024 points) is charged the dB by
    which its error exceeds the noise the input held in it. An error more than 35 dB below the band's own
    clean signal (or 80 dB below the whole example's) is free, so bands of near silence and inaudible
    changes do not pull the model towards an exact copy.
    """

    def band_power(x: torch.Tensor) -> torch.Tensor:
        power = _magnitude(x, n_fft, n_fft // 4).pow(2).sum(-1)  # (batch, bins): over the example
        return torch.stack([power[:, a:b].sum(1) for a, b in zip(edges[:-1], edges[1:], strict=True)], 1)

    bins = n_fft // 2 + 1
    edges = sorted({round(bins ** (i / bands)) for i in range(bands + 1)})  # bins 1 (above DC) to Nyquist
    clean = band_power(target)
    free = clean * 10 ** (BAND_HARM_FREE_DB / 10) + clean.sum(1, keepdim=True) * 1e-8 + EPS
    harm = 10 * torch.log10((band_power(estimate - target) + free) / (band_power(source - target) + free))
    return harm.clamp_min(0.0).mean() / 10.0


WAVEFORM_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": waveform_l1,
    "mrstft": multi_resolution_stft,
    "si_sdr": neg_si_sdr,
    "snr": neg_snr,
    "energy": energy_preservation,
}

#: Terms that also read the network's input: ``fn(estimate, target, source) -> scalar``.
INPUT_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "no_harm": no_harm,
    "band_no_harm": band_no_harm,
}


# ----------------------------------------------------------------------------- Noise2Noise terms
def noise2noise_mse(estimate: torch.Tensor, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """|estimate - target|^2 / |source|^2 per example, averaged.

    With target = clean + noise_a and an estimate made from source = clean + noise_b, the
    expectation over noise_a is minimised by the clean signal (Noise2Noise). The normaliser
    is the *source's* power, which does not depend on noise_a, so the optimum is unchanged
    while loud and quiet examples weigh alike.
    """
    est, ref, src = flat(estimate), flat(target), flat(source)
    return ((est - ref).pow(2).sum(1) / (src.pow(2).sum(1) + EPS)).mean()


def content(z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
    """Distance between the paired latents relative to how much latents vary across the batch.

    Plain (or scale-normalised) MSE between z_a and z_b is minimised by a latent that ignores
    its input; it collapsed to 0 in our first runs while the skip path did all the
    reconstruction, leaving the no-skip cross path blind. Dividing by the spread of latents
    over the batch's different clips makes collapse useless: z must differ between clips and
    agree between the two noisy copies of one clip. 0 for identical inputs.
    """
    a, b = flat(z_a), flat(z_b)
    if a.shape[0] < 2:  # no spread to measure in a batch of one: fall back to a scale-free distance
        return ((a - b).pow(2).sum(1) / (0.5 * (a.pow(2).sum(1) + b.pow(2).sum(1)) + EPS)).mean()
    spread = torch.cat([a, b]).var(dim=0).mean()
    return (a - b).pow(2).mean() / (spread + EPS)


def _log_magnitude(x: torch.Tensor, n_fft: int = 512, hop: int = 128) -> torch.Tensor:
    return _magnitude(x, n_fft, hop).log()


def edge(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Spectro-temporal gradient loss: L1 between the time and frequency differences of the
    log-magnitude spectrograms, which keeps onsets and harmonic edges sharp."""
    est, ref = _log_magnitude(estimate), _log_magnitude(target)
    d_time = (est.diff(dim=2) - ref.diff(dim=2)).abs().mean()
    d_freq = (est.diff(dim=1) - ref.diff(dim=1)).abs().mean()
    return d_time + d_freq


def weighted_sum(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    return sum(weights[name] * value for name, value in terms.items())


def waveform_loss_terms(
    estimate: torch.Tensor,
    target: torch.Tensor,
    weights: dict[str, float],
    source: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Every term whose weight is non-zero; unknown names are a clear error. ``source`` is the network's
    input, which the INPUT_LOSSES also read."""
    unknown = sorted(set(weights) - set(WAVEFORM_LOSSES) - set(INPUT_LOSSES))
    if unknown:
        raise ValueError(
            f"unknown loss term(s) {unknown}; known: {sorted({**WAVEFORM_LOSSES, **INPUT_LOSSES})}"
        )
    terms = {name: fn(estimate, target) for name, fn in WAVEFORM_LOSSES.items() if weights.get(name)}
    for name, fn in INPUT_LOSSES.items():
        if weights.get(name):
            if source is None:
                raise ValueError(f"the {name} loss term compares the output with the input: pass source=")
            terms[name] = fn(estimate, target, source)
    return terms
