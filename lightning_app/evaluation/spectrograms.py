"""Spectrogram pictures for people: log frequency, one dB scale per example, axes and a colour bar.

One renderer serves the listening report, TensorBoard's validation examples and evaluate's panels, so
a spectrogram reads the same wherever it is seen: the tracks of one example (before / after / removed,
noisy / denoised / clean) share a colour scale, from the example's loudest band (rounded up to 5 dB)
down ``RANGE_DB``, on ``ROWS`` log-spaced bands from ``F_MIN`` to Nyquist; 0 dB is a full-scale sine.
"""

from __future__ import annotations

import math

import numpy as np

RANGE_DB = 90.0
F_MIN = 30.0
ROWS = 320
FREQUENCY_TICKS = (50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)


def blackman_harris(n: int) -> np.ndarray:
    """The periodic 4-term Blackman-Harris window: sidelobes at -92 dB, so nothing leaks within the scale."""
    phase = 2 * np.pi * np.arange(n) / n
    return (
        0.35875 - 0.48829 * np.cos(phase) + 0.14128 * np.cos(2 * phase) - 0.01168 * np.cos(3 * phase)
    ).astype(np.float32)


def fft_size(rate: int) -> int:
    """93 ms (4096 at 44.1/48 kHz, 2048 at 16 kHz... rounded to a power of two): low harmonics resolved."""
    return 1 << int(round(math.log2(0.093 * rate)))


def stft_power(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """(bins, frames) power of (frames,) or (frames, channels) audio, averaged over channels and scaled so
    a full-scale sine's peak bin reads 0 dB."""
    x = np.asarray(x, dtype=np.float32)
    x = x[:, None] if x.ndim == 1 else x
    if len(x) < n_fft:
        x = np.pad(x, ((0, n_fft - len(x)), (0, 0)))
    window = blackman_harris(n_fft)
    power = 0.0
    for c in range(x.shape[1]):
        frames = np.lib.stride_tricks.sliding_window_view(x[:, c], n_fft)[::hop]
        power = power + np.abs(np.fft.rfft(frames * window, axis=1).astype(np.complex128)) ** 2
    return (power / x.shape[1] * (2.0 / window.sum()) ** 2).T


def log_rows(power: np.ndarray, rate: int, n_fft: int, rows: int = ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Power on ``rows`` log-spaced bands from F_MIN to Nyquist (each band the mean of the bins it covers,
    fractional bins included), and the band edges in Hz."""
    edges = np.geomspace(F_MIN, rate / 2, rows + 1)
    position = edges / (rate / n_fft) + 0.5  # bin k covers [k - 0.5, k + 0.5) in bin units
    # float64: the band powers are differences of this running sum, and a tone's power in it would swamp
    # a quiet band's in float32 (-80 dB below a tone is under float32's 1e-7)
    cumulative = np.vstack([np.zeros((1, power.shape[1])), np.cumsum(power, axis=0, dtype=np.float64)])
    low = np.clip(np.floor(position).astype(int), 0, cumulative.shape[0] - 2)
    w = np.clip(position - low, 0.0, 1.0)[:, None]
    at = cumulative[low] * (1 - w) + cumulative[low + 1] * w  # the cumulative power, linear within a bin
    return np.diff(at, axis=0) / np.diff(position)[:, None], edges


def band_levels(x: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(dB on log-frequency rows x frames, band edges in Hz) of a track."""
    n_fft = fft_size(rate)
    power, edges = log_rows(stft_power(x, n_fft, n_fft // 8), rate, n_fft)  # hop n/8: clicks stay thin
    return 10 * np.log10(np.maximum(power, 1e-16)), edges


def figure(
    examples: list[dict[str, np.ndarray]],
    rate: int,
    *,
    titles: dict[str, str] | None = None,
    row_labels: list[str] | None = None,
    xlabel: str = "seconds",
    title: str | None = None,
    width: float = 14.0,
    row_height: float = 3.4,
    dpi: int = 90,
    title_size: float = 10,
):
    """A matplotlib Figure: one row per example, its tracks side by side in the dict's order (titled by
    ``titles``, else by their names), each row on its own shared scale with its colour bar; ``title`` above.
    Returns (figure, one {"vmin", "vmax", "clim": {track: (lo, hi)}} per row)."""
    from matplotlib.figure import Figure

    n_rows, n_cols = len(examples), max(len(e) for e in examples)
    head = 0.4 if title else 0.0  # inches above the rows for the title
    total = row_height * n_rows + head
    fig = Figure(figsize=(width, total), dpi=dpi)  # fixed axes: a layout engine costs more than the drawing
    if title:
        fig.text(0.5, 1 - 0.5 * head / total, title, ha="center", va="center", fontsize=title_size + 1)
    # fixed margins in inches: the frequency labels on the left; on the right the colour bar (0.14 in, 0.12 in
    # from the last panel), its tick labels ("-100") and its label, which must stay inside the figure
    left, right, gap = 0.8 / width, 1 - 1.3 / width, 0.35 / width
    bar_gap, bar_width = 0.12 / width, 0.14 / width
    width_each = (right - left - gap * (n_cols - 1)) / n_cols
    scales = []
    for r, tracks in enumerate(examples):
        levels = {name: band_levels(x, rate) for name, x in tracks.items()}
        edges = next(iter(levels.values()))[1]
        vmax = 5.0 * math.ceil(max(float(db.max()) for db, _ in levels.values()) / 5.0)
        vmin = vmax - RANGE_DB
        seconds = max(len(x) for x in tracks.values()) / rate
        row_top = total - head - r * row_height  # inches from the bottom
        # fixed margins in inches: the tick labels and axis title below, the panel titles above
        bottom, top = (row_top - row_height + 0.55) / total, (row_top - 0.32) / total
        axes = [
            fig.add_axes((left + i * (width_each + gap), bottom, width_each, top - bottom))
            for i in range(len(tracks))
        ]
        images = {}
        for ax, (name, (db, _)) in zip(axes, levels.items(), strict=True):
            images[name] = ax.imshow(
                db,
                origin="lower",
                aspect="auto",
                cmap="magma",
                vmin=vmin,
                vmax=vmax,
                interpolation="nearest",
                extent=(0.0, seconds, math.log10(edges[0]), math.log10(edges[-1])),
            )
            ax.set_title((titles or {}).get(name, name), fontsize=title_size)
            ax.set_xlabel(xlabel, fontsize=9)
            ax.tick_params(labelsize=8)
        ticks = [t for t in FREQUENCY_TICKS if F_MIN <= t <= rate / 2]
        axes[0].set_yticks(
            [math.log10(t) for t in ticks], [f"{t // 1000}k" if t >= 1000 else str(t) for t in ticks]
        )
        axes[0].set_ylabel("Hz (log)" if not row_labels else f"{row_labels[r]}\nHz (log)", fontsize=9)
        for ax in axes[1:]:
            ax.set_yticks(axes[0].get_yticks(), [])
        bar = fig.colorbar(
            images[next(iter(images))], cax=fig.add_axes((right + bar_gap, bottom, bar_width, top - bottom))
        )
        bar.set_label("dB (full-scale sine = 0)", fontsize=9)
        bar.ax.tick_params(labelsize=8)
        scales.append(
            {
                "vmin": vmin,
                "vmax": vmax,
                "clim": {k: tuple(map(float, im.get_clim())) for k, im in images.items()},
            }
        )
    return fig, scales


def rgb(fig) -> np.ndarray:
    """The figure as an (H, W, 3) uint8 image (for TensorBoard)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
