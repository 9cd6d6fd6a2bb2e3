"""Real Noise2Noise pairs: two noisy transfers of the same recording (two pressings of a
record, two prints of a film), in two folders with matching relative file names.

Transfers never start at the same instant and may differ in level and polarity, so each
pair is aligned by normalised cross-correlation before any segment is cut. The lag is
measured in two windows (at 25 % and 75 % of the recording): a lag that differs between
them means the transfers run at different speeds, which no single offset can fix. Pairs
that do not line up, correlate too weakly or drift are reported by name and left out.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import signal
from torch.utils.data import Dataset

from lightning_app.data import audio_io
from lightning_app.data.cache import cached_json, fingerprint
from lightning_app.data.mixing import gain_without_clipping

log = logging.getLogger(__name__)


@dataclass
class PairAlignment:
    name: str  # relative file name, the same in both folders
    path_a: str
    path_b: str
    sample_rate_a: int
    sample_rate_b: int
    lag: int  # b[t + lag] lines up with a[t], in model-rate samples
    correlation: float  # normalised correlation at the lag (after the polarity fix)
    drift_ms: float  # lag difference between the two measuring windows
    gain_b: float  # multiplies b: level (and polarity) matched to a
    start: int  # first sample of a whose twin exists in b (model rate)
    length: int  # number of aligned samples


def _read_window(path: str, file_rate: int, rate: int, start: int, length: int) -> np.ndarray:
    """Mono samples [start, start + length) at ``rate`` of a file recorded at ``file_rate``."""
    mono = audio_io.read_resampled(path, file_rate, rate, int(start * file_rate / rate), length)
    return np.pad(mono, (0, max(0, length - len(mono)))).astype(np.float64)


def best_lag(a: np.ndarray, b: np.ndarray, max_lag: int) -> tuple[int, float]:
    """Lag in [-max_lag, max_lag] maximising |normalised correlation| of ``a`` with ``b`` shifted.

    ``b`` must be ``len(a) + 2 * max_lag`` long and start ``max_lag`` samples before ``a``;
    returns (lag, signed correlation).
    """
    a = a - a.mean()
    raw = signal.correlate(b, a, mode="valid", method="fft")  # raw[k] = sum_t a[t] * b[t + k]
    energy = np.concatenate([[0.0], np.cumsum(b * b)])
    window = len(a)
    b_energy = energy[window:] - energy[:-window]
    b_sum = np.concatenate([[0.0], np.cumsum(b)])
    b_mean = (b_sum[window:] - b_sum[:-window]) / window
    b_norm = np.sqrt(np.maximum(b_energy - window * b_mean**2, 1e-20))
    corr = raw / (np.linalg.norm(a) * b_norm + 1e-20)
    k = int(np.argmax(np.abs(corr)))
    return k - max_lag, float(corr[k])


def align_pair(
    name: str, path_a: str, path_b: str, sample_rate: int, max_lag_seconds: float, window_seconds: float
) -> PairAlignment:
    """Measure lag, drift, correlation and level of one pair. Raises AudioFileError if unreadable."""
    info_a, info_b = audio_io.probe(path_a), audio_io.probe(path_b)
    len_a = int(info_a.frames * sample_rate / info_a.sample_rate)
    len_b = int(info_b.frames * sample_rate / info_b.sample_rate)
    max_lag = int(max_lag_seconds * sample_rate)
    window = min(int(window_seconds * sample_rate), len_a // 3)
    if window < sample_rate // 4:
        raise audio_io.AudioFileError(path_a, f"too short to align ({info_a.seconds:.2f} s)")
    lags, corrs, gains = [], [], []
    for fraction in (0.25, 0.75):
        start = int(fraction * len_a) - window // 2
        a = _read_window(path_a, info_a.sample_rate, sample_rate, start, window)
        b_start = start - max_lag
        b = _read_window(path_b, info_b.sample_rate, sample_rate, max(b_start, 0), window + 2 * max_lag)
        if b_start < 0:  # a window near b's start: pad so index 0 is still "max_lag before a"
            b = np.concatenate([np.zeros(-b_start), b])[: window + 2 * max_lag]
        lag, corr = best_lag(a, b, max_lag)
        aligned = b[max_lag + lag : max_lag + lag + window]
        lags.append(lag)
        corrs.append(corr)
        gains.append(np.sqrt((a @ a) / max(aligned @ aligned, 1e-20)))
    lag = int(round(np.mean(lags)))
    sign = 1.0 if corrs[0] + corrs[1] >= 0 else -1.0
    start = max(0, -lag)
    return PairAlignment(
        name=name,
        path_a=str(path_a),
        path_b=str(path_b),
        sample_rate_a=info_a.sample_rate,
        sample_rate_b=info_b.sample_rate,
        lag=lag,
        correlation=float(min(sign * c for c in corrs)),
        drift_ms=1000.0 * abs(lags[1] - lags[0]) / sample_rate,
        gain_b=float(sign * np.median(gains)),
        start=start,
        length=max(0, min(len_a, len_b - lag) - start),
    )


def rejection(
    pair: PairAlignment, min_correlation: float, max_drift_ms: float, min_samples: int
) -> str | None:
    """Why a measured pair must not be used, or None."""
    if pair.correlation < min_correlation:
        return (
            f"too different after alignment: correlation {pair.correlation:.2f} < {min_correlation} "
            f"(not the same recording, or misaligned beyond the lag window)"
        )
    if pair.drift_ms > max_drift_ms:
        return (
            f"the transfers drift apart by {pair.drift_ms:.1f} ms between 25 % and 75 % of the recording "
            f"(limit {max_drift_ms} ms): different speeds, one offset cannot align them"
        )
    if pair.length < min_samples:
        return f"only {pair.length} aligned samples, fewer than one training segment ({min_samples})"
    return None


class RealPairIndex:
    """The aligned pairs of two folders, measured once and cached as JSON by path/size/mtime."""

    def __init__(self, pairs: list[PairAlignment], rejected: dict[str, str]):
        self.pairs = pairs
        self.rejected = rejected

    @classmethod
    def build(
        cls,
        folder_a: str,
        folder_b: str,
        sample_rate: int,
        min_samples: int,
        max_lag_seconds: float = 1.0,
        window_seconds: float = 2.0,
        min_correlation: float = 0.3,
        max_drift_ms: float = 1.0,
        cache_dir: str | None = None,
    ) -> RealPairIndex:
        root_a, root_b = Path(folder_a), Path(folder_b)
        files_a = {p.relative_to(root_a).as_posix(): p for p in audio_io.find_audio_files(root_a)}
        files_b = {p.relative_to(root_b).as_posix(): p for p in audio_io.find_audio_files(root_b)}
        rejected = {
            name: f"present in {folder_a if name in files_a else folder_b} only"
            for name in sorted(files_a.keys() ^ files_b.keys())
        }
        names = sorted(files_a.keys() & files_b.keys())

        def align_all() -> dict:
            measured, unreadable = [], {}
            for name in names:
                try:
                    measured.append(
                        asdict(
                            align_pair(
                                name,
                                str(files_a[name]),
                                str(files_b[name]),
                                sample_rate,
                                max_lag_seconds,
                                window_seconds,
                            )
                        )
                    )
                except audio_io.AudioFileError as exc:
                    unreadable[name] = str(exc)
            return {"measured": measured, "unreadable": unreadable}

        files = [p for name in names for p in (files_a[name], files_b[name])]
        data = cached_json(
            cache_dir, "pairs", fingerprint(files, (sample_rate, max_lag_seconds, window_seconds)), align_all
        )
        measured = [PairAlignment(**p) for p in data["measured"]]
        rejected.update(data["unreadable"])
        usable = []
        for pair in measured:
            reason = rejection(pair, min_correlation, max_drift_ms, min_samples)
            if reason is None:
                usable.append(pair)
            else:
                rejected[pair.name] = reason
        for name, reason in sorted(rejected.items()):
            log.warning("real pairs: leaving out %s: %s", name, reason)
        if not usable:
            raise FileNotFoundError(
                f"no usable real pairs in {folder_a} and {folder_b}: "
                + "; ".join(f"{n}: {r}" for n, r in sorted(rejected.items())[:5])
            )
        log.info(
            "real pairs: %d aligned (lags %s ms), %d left out",
            len(usable),
            ", ".join(f"{1000 * p.lag / sample_rate:+.1f}" for p in usable[:8]),
            len(rejected),
        )
        return cls(usable, rejected)


class RealPairDataset(Dataset):
    """Aligned segments {"noisy": x_a, "noisy_b": x_b} of real pairs; no clean signal exists.

    Keys as for the synthetic datasets: a pair is drawn with probability proportional to its
    aligned length, then a random segment; both copies get the same random overall gain.
    """

    def __init__(self, index: RealPairIndex, sample_rate: int, num_samples: int, gain_db, seed: int):
        self.pairs = index.pairs
        self.sample_rate = sample_rate
        self.num_samples = num_samples
        self.gain_db = tuple(gain_db)
        self.seed = seed
        lengths = np.array([p.length for p in self.pairs], dtype=np.float64)
        self.probs = lengths / lengths.sum()

    def __getitem__(self, key) -> dict:
        rng = np.random.default_rng((self.seed, *(int(k) for k in key)))
        index = int(rng.choice(len(self.pairs), p=self.probs))
        pair = self.pairs[index]
        start = pair.start + int(rng.integers(0, pair.length - self.num_samples + 1))
        a = _read_window(pair.path_a, pair.sample_rate_a, self.sample_rate, start, self.num_samples)
        b = pair.gain_b * _read_window(
            pair.path_b, pair.sample_rate_b, self.sample_rate, start + pair.lag, self.num_samples
        )
        signals = gain_without_clipping({"noisy": a, "noisy_b": b}, float(rng.uniform(*self.gain_db)))
        example = {k: torch.from_numpy(v.astype(np.float32)).unsqueeze(0) for k, v in signals.items()}
        example["noise_type"] = "real_pair"
        example["content"] = "real_pair"
        example["index"] = torch.tensor(index)
        return example
