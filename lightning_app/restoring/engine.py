"""The streaming restoration engine: model chunks on one global grid, blocks of a file, levels and channels.

A file of any length is denoised block by block; every block is computed from a window of the input that
holds every model chunk (on one global chunk grid) and every resampling tap its samples depend on, so the
result equals a single pass over the whole file while memory stays bounded by the block. ``plan_grid`` and
``plan_block`` (pure functions) fix where chunks, blocks and reads fall; ``restoring.files`` reads and
writes the files.
"""

from __future__ import annotations

import functools
import itertools
import math
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from lightning_app.data.dsp import resample_to
from lightning_app.restoring.guard import GuardedDenoiser
from lightning_app.restoring.networks import Network, as_network, cpu_cores


# ----------------------------------------------------------------------------- signal path
# Everything from the block read to the block written is numpy on the CPU: resampling, level, chunk
# batches, the cross-fade sums, the guard and the high band. The network call is the one step an engine
# does its own way (restoring/networks.py): ONNX Runtime on the CPU, or torch on a CPU or a GPU.
def _columns(columns: list) -> np.ndarray:
    """1-D columns side by side as (frames, n)."""
    return np.stack(columns, axis=1)


def chunk_grid(length: int, chunk: int, overlap: int) -> tuple[int, int, int]:
    """(padded length, number of chunks, step) of the chunk grid over a signal of ``length``."""
    if length <= chunk:
        return length, 1, chunk
    step = chunk - overlap
    count = 1 + math.ceil((length - chunk) / step)
    return (count - 1) * step + chunk, count, step


def chunks_reaching(length: int, chunk: int, overlap: int, first: int = 0, last: int | None = None) -> range:
    """Indices of the grid's chunks that reach into [first, last): a block's chunks, found without
    listing the file's, so a block of a three-hour file costs what a block of a short one does."""
    padded, count, step = chunk_grid(length, chunk, overlap)
    if count == 1:
        return range(1)
    last = padded if last is None else last
    return range(max(0, (first - chunk) // step + 1), min(count - 1, (last - 1) // step) + 1)


def chunk_window(index: int, count: int, size: int, overlap: int) -> np.ndarray:
    """Weight of chunk ``index``: sin^2 fade-in after the first chunk, cos^2 fade-out before the last."""
    w = np.ones(size)
    fade_in = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / max(overlap, 1)) ** 2
    if index > 0 and overlap:
        w[:overlap] = fade_in
    if index < count - 1 and overlap:
        w[size - overlap :] = 1.0 - fade_in
    return w


def crossfade_windows(
    length: int, chunk: int, overlap: int, first: int = 0, last: int | None = None
) -> tuple[int, list[tuple[int, np.ndarray]]]:
    """(padded length, [(start, weight)]) for the chunks that reach into [first, last).

    Neighbouring chunks overlap by exactly ``overlap`` samples with complementary sin^2/cos^2
    fades, so the weights sum to 1 everywhere. The first chunk's start and the last chunk's
    end have no fade, so nothing is ever divided by a near-zero window; the signal is
    zero-padded at the end to fill the grid.
    """
    padded, count, step = chunk_grid(length, chunk, overlap)
    if count == 1:
        return padded, [(0, np.ones(length))]
    return padded, [
        (i * step, chunk_window(i, count, chunk, overlap))
        for i in chunks_reaching(length, chunk, overlap, first, last)
    ]


@functools.lru_cache(maxsize=32)
def _window(fades: tuple[bool, bool], size: int, overlap: int) -> np.ndarray:
    """A chunk's weight (float64): a grid has at most four kinds (fade in, out, both, none)."""
    index, count = (1, 3) if fades == (True, True) else (1, 2) if fades[0] else (0, 2) if fades[1] else (0, 1)
    window = chunk_window(index, count, size, overlap)
    window.flags.writeable = False  # shared by every chunk of its kind
    return window


def _pad_with_reflection(chunks: np.ndarray, last_start: int, end: int) -> None:
    """Fill ``chunks[end:]`` (past the signal's end) with the last chunk's own samples, mirrored.

    Zeros there made the last chunk mostly digital silence: the guard's noise floor (a low percentile of
    the chunk) fell to nothing, so it put back everything the model removed, and the network itself removed
    less music; a file's last seconds came out barely restored. The last chunk always holds more than the
    overlap of real signal, and mirroring only its own samples keeps the result independent of where a
    block starts."""
    tail = chunks[last_start:end]
    chunks[end:] = np.pad(tail, (0, len(chunks) - end), mode="symmetric")[len(tail) :]


def enhance_mono(
    network: Network,
    audio: np.ndarray,
    chunk: int,
    overlap: int,
    batch_size: int = 8,
    span: tuple[int, int, int] | None = None,
    offset: int = 0,
    gain: float = 1.0,
    carry: dict[int, np.ndarray] | None = None,
    keep_from: int | None = None,
) -> np.ndarray:
    """Denoise one channel at the model's rate in cross-faded chunks (bounded model memory).

    ``audio`` holds samples [offset, offset + len) of a signal whose chunk grid starts at 0;
    with ``span`` = (first, last, total), ``total`` the whole signal's length, only the chunks
    that reach into [first, last) are run, and the result is exact there: the same chunks with the
    same weights as a pass over the whole signal. Default: the whole of ``audio``. The network sees
    ``audio * gain`` (the product in float64, rounded once to float32); the result is divided by it again.
    Returns float64.

    ``carry`` (with ``span``) maps a chunk's start to its weighted output: those chunks are not run
    again and need no input, and afterwards it holds this call's chunks that reach past ``keep_from``
    (the next block's first needed sample), so consecutive blocks run each chunk of the file once.
    """
    network = as_network(network)
    audio = np.asarray(audio)
    first, last, total = (0, None, offset + len(audio)) if span is None else span
    padded_total, count, step = chunk_grid(total, chunk, overlap)
    size = chunk if count > 1 else padded_total
    indices = chunks_reaching(total, chunk, overlap, first, last)
    carried = carry if carry is not None and span is not None else {}
    todo = [i for i in indices if i * step not in carried]
    lo, hi = indices[0] * step, indices[-1] * step + size
    out = np.zeros(hi - lo)  # float64: the cross-fade sums, as one pass does them
    keep = {}  # this call's weighted chunk outputs that the next block needs

    def add(s: int, piece: np.ndarray) -> None:
        out[s - lo : s - lo + len(piece)] += piece
        if keep_from is not None and s + len(piece) > keep_from:
            keep[s] = piece

    for i in indices[: len(indices) - len(todo)]:  # the carried chunks come first: the sums keep their order
        add(i * step, carried[i * step])
    if todo:
        in0, in1 = todo[0] * step, todo[-1] * step + size
        if in0 < offset:
            raise ValueError(f"input starts at {offset} but the first chunk needs sample {in0}")
        padded = np.zeros(in1 - in0, dtype=np.float32)
        have = audio[in0 - offset : in1 - offset]
        padded[: len(have)] = have if gain == 1.0 else have.astype(np.float64) * gain
        if in1 > total:  # the last chunk reaches past the end of the signal
            _pad_with_reflection(padded, (count - 1) * step - in0, total - in0)
        # Batches are fixed groups of the file's chunk grid (chunks 0..b-1, b..2b-1, ...), as in one pass over
        # the whole signal: a chunk's result varies with the batch it is in (by float32 rounding), so it must
        # not depend on where a block starts.
        for _, batch in itertools.groupby(todo, key=lambda i: i // batch_size):
            group = list(batch)
            pieces = np.stack([padded[i * step - in0 : i * step - in0 + size] for i in group])
            enhanced = network.enhance(pieces)
            for i, piece in zip(group, enhanced, strict=True):
                add(i * step, _window((i > 0, i < count - 1), size, overlap) * piece)
            del pieces, enhanced  # freed before the next forward, which reuses the memory
    if carry is not None and span is not None:
        carry.clear()
        carry.update(keep)
    if gain != 1.0:
        out /= gain
    if span is None:
        return out[: len(audio)]
    return out  # samples [lo, hi) of the whole signal's output


class RowsAtOnce:
    """A network whose batches run row by row, the rows at once on ``pool``'s threads: with one core per call
    (ONNX Runtime opened with one thread), a batch of two chunks keeps two cores busy, guard included. Each
    row's result is the network's own for that row alone."""

    def __init__(self, network, pool: ThreadPoolExecutor):
        self.network, self.pool = network, pool

    def enhance(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 1:
            return self.network.enhance(batch)
        rows = self.pool.map(lambda row: self.network.enhance(row[None])[0], batch)
        return np.stack(list(rows))


@dataclass(frozen=True)
class Grid:
    """Where chunks and blocks fall for one file rate; sizes in model samples unless named ``*_file``.

    Chunk steps and block edges fall on sample positions that exist at both rates (multiples of
    ``unit_model`` model samples = ``unit_file`` file samples), so a block's output joins its
    neighbours' exactly.
    """

    chunk: int
    overlap: int
    unit_model: int
    unit_file: int
    block_file: int

    def blocks(self, frames: int) -> list[tuple[int, int]]:
        return [(s, min(s + self.block_file, frames)) for s in range(0, frames, self.block_file)]


def plan_grid(
    rate: int, model_rate: int, chunk_seconds: float, overlap_seconds: float, block_seconds: float
) -> Grid:
    g = math.gcd(rate, model_rate)
    unit_m, unit_f = model_rate // g, rate // g
    chunk = max(int(chunk_seconds * model_rate), 2 * unit_m)
    overlap = min(int(overlap_seconds * model_rate), chunk // 2)
    step = max(unit_m, round((chunk - overlap) / unit_m) * unit_m)
    block_m = max(1, round(block_seconds * model_rate / step)) * step
    return Grid(
        chunk=step + overlap,
        overlap=overlap,
        unit_model=unit_m,
        unit_file=unit_f,
        block_file=block_m // unit_m * unit_f,
    )


def model_length(frames: int, rate: int, model_rate: int) -> int:
    return math.ceil(frames * model_rate / rate)  # what resampling the whole signal gives


#: file samples a resampling filter reaches beyond a block (its taps reach a few dozen; rounded up to grid
#: units)
RESAMPLING_MARGIN = 2048


@dataclass(frozen=True)
class BlockPlan:
    """Where one block's work falls: model-rate samples unless named ``*_f`` (file samples).

    The block's output depends on model samples [need0, need1) (the block plus the resampling margin);
    the chunks reaching into [need0, run1) are run (``run1`` > ``need1`` when the last batch is run whole
    for the next block); file samples [read0_f, read1_f) feed them, and ``offset`` is the model sample the
    read starts at. ``chunk_start`` is where the first chunk starts, ``keep_from`` the next block's ``need0``,
    and ``first_f`` the block's first sample within the file-rate output that starts at ``need0``.
    """

    need0: int
    need1: int
    run1: int
    total: int
    chunk_start: int
    read0_f: int
    read1_f: int
    offset: int
    keep_from: int
    first_f: int


def plan_block(
    grid: Grid,
    frames: int,
    rate: int,
    model_rate: int,
    block: tuple[int, int],
    batch_size: int,
    carried: set[int] | None = None,
) -> BlockPlan:
    """The reads and chunk runs of file samples ``block`` of a ``frames``-long file (a pure function).

    ``carried`` (None: no carry between blocks) holds the starts of the chunks the previous block already
    ran for this one; they need no input. With a carry the block's last batch of chunks is run whole, so
    that batches stay the fixed groups of the file's chunk grid that one pass over the file would run.
    """
    chunk, overlap, unit_m, unit_f = grid.chunk, grid.overlap, grid.unit_model, grid.unit_file
    # At the model's rate there are no resampling taps, and without the margin a block of whole batches
    # needs no chunk of the next batch.
    margin_f = 0 if rate == model_rate else math.ceil(RESAMPLING_MARGIN / unit_f) * unit_f
    margin_m = margin_f // unit_f * unit_m
    total = model_length(frames, rate, model_rate)
    start_f, stop_f = block
    c0, c1 = start_f // unit_f * unit_m, model_length(stop_f, rate, model_rate)
    need0, need1 = max(0, c0 - margin_m), min(total, c1 + margin_m)
    _, count, step = chunk_grid(total, chunk, overlap)
    size = chunk if count > 1 else total
    run1 = need1
    if carried is not None:
        last = chunks_reaching(total, chunk, overlap, need0, need1)[-1]
        run1 = max(need1, min(count - 1, (last // batch_size + 1) * batch_size - 1) * step + 1)
    indices = chunks_reaching(total, chunk, overlap, need0, run1)
    run = [i * step for i in indices if i * step not in (carried or ())]
    in0 = min(need0, run[0]) if run else need0
    in1 = min(total, max(need1, run[-1] + size)) if run else need1
    read0_f = max(0, in0 // unit_m * unit_f - margin_f)
    read1_f = min(frames, math.ceil(in1 / unit_m) * unit_f + margin_f)
    return BlockPlan(
        need0=need0,
        need1=need1,
        run1=run1,
        total=total,
        chunk_start=indices[0] * step,
        read0_f=read0_f,
        read1_f=read1_f,
        offset=read0_f // unit_f * unit_m,
        keep_from=c1 - margin_m,
        first_f=start_f - need0 // unit_m * unit_f,
    )


#: The level of a whole signal is added up from blocks of this length, whatever the restore's blocks: a
#: file's level scan and ``Restorer.__call__`` on the same audio then find the same gains to the last bit.
#: Short enough that the buffers stay under glibc's mmap threshold (60-s blocks were mapped and faulted in
#: afresh each time, 3x as slow).
LEVEL_BLOCK_SECONDS = 10


def sum_of_squares(signals: np.ndarray) -> np.ndarray:
    """Per signal (column) of a (frames, signals) float64 block, the sum of its squares."""
    return np.einsum("ij,ij->j", signals, signals)  # 3x faster than square-then-sum along frames


# Model input level: about the median RMS of the default training mixtures.
TARGET_RMS_DBFS = -30.0

CHANNEL_MODES = ("independent", "mid_side")

HIGH_BAND = ("pass", "drop")


@dataclass
class Restorer:
    """Denoises (frames, channels) audio at any rate into audio of the same shape and rate.

    Long files go through ``restore_file`` block by block: every block is computed from a
    window of the input that holds every model chunk (on one global chunk grid, in the same
    batches) and every resampling tap its samples depend on, so the result equals a single pass
    over the whole file while memory stays bounded by the block length.

    Each channel (or mid and side) is brought to the level the model was trained at with one
    gain for the whole file — never per block or chunk, which would make level jumps — and
    the gain is undone afterwards. Above the model's Nyquist frequency the input is passed
    through untouched (``high_band='pass'``) or dropped; ``mix`` blends the result with the input.
    """

    #: the network: an exported model (restoring/networks.py), or a torch module (a checkpoint's Denoiser, a
    #: system), which is run by the torch engine on its own device
    model: Network
    mix: float = 1.0
    chunk_seconds: float = 5.0
    overlap_seconds: float = 0.5
    batch_size: int = 2
    normalise: bool = True
    channel_mode: str = "independent"
    high_band: str = "pass"
    # restore_file hands the chunks two blocks share from one to the next (process_block's carry), so
    # short blocks cost no extra model time; memory grows with the block (`make bench` measures both).
    block_seconds: float = 10.0
    # Threads restoring at once (None: one per core): the signals (channels) first, then the rows of each
    # signal's chunk batches with the threads left over, each row a network call of its own. The network
    # should then use one core per call (the CLI opens ONNX Runtime so). On 2 cores with ONNX Runtime, two
    # calls of one thread each restore stereo about a third faster than one call of two threads (numpy's
    # single-threaded parts, the guard among them, run beside the other call's network), for one more set of
    # activations (~110 MB for the bundled model); the output is the same.
    workers: int | None = 1
    # The do-no-harm guard (restoring/guard.py) holds back removals that do not look like noise; off: the
    # model's output as it is.
    guard: bool = True

    def __post_init__(self):
        if not 0.0 <= self.mix <= 1.0:
            raise ValueError(f"--mix must be between 0 and 1, got {self.mix}")
        if self.channel_mode not in CHANNEL_MODES:
            raise ValueError(f"channel mode must be one of {CHANNEL_MODES}, got {self.channel_mode!r}")
        if self.high_band not in HIGH_BAND:
            raise ValueError(f"high band must be one of {HIGH_BAND}, got {self.high_band!r}")
        self.model = as_network(self.model)
        self.model_rate = int(self.model.sample_rate)
        if self.guard and not isinstance(self.model, GuardedDenoiser):
            self.model = GuardedDenoiser(self.model)

    @property
    def calls_at_once(self) -> int:
        """The most network calls this restorer runs at once (``workers``, or one per core)."""
        return self.workers or cpu_cores()

    # ------------------------------------------------------------------ grids
    def grid(self, rate: int) -> Grid:
        return plan_grid(rate, self.model_rate, self.chunk_seconds, self.overlap_seconds, self.block_seconds)

    def plan(self, frames: int, rate: int) -> list[tuple[int, int]]:
        """File-sample blocks [start, stop) that restore_file writes one after another."""
        return self.grid(rate).blocks(frames)

    # ------------------------------------------------------------------ processing
    def levels(self, mean_squares: np.ndarray) -> np.ndarray:
        """Per processed signal: the gain that brings it to the training level."""
        gains = np.ones(len(mean_squares))
        if self.normalise:
            rms = np.sqrt(mean_squares)
            ok = rms > 1e-7
            gains[ok] = 10 ** (TARGET_RMS_DBFS / 20) / rms[ok]
        return gains

    def mean_squares(self, audio: np.ndarray, rate: int) -> np.ndarray:
        """Per processed signal, the mean square of (frames, channels) ``audio``, added up as ``restore_file``
        does it (``LEVEL_BLOCK_SECONDS``)."""
        step = LEVEL_BLOCK_SECONDS * rate
        total = np.zeros(self.to_signals(np.zeros((0, np.shape(audio)[1]))).shape[1])  # + x is x exactly
        for start in range(0, len(audio), step):
            total = total + sum_of_squares(
                self.to_signals(np.asarray(audio[start : start + step], np.float64))
            )
        return total / max(len(audio), 1)

    def to_signals(self, audio):
        """(frames, channels) -> (frames, signals): channels, or mid and side."""
        if self.channel_mode == "mid_side" and audio.shape[1] == 2:
            return _columns([0.5 * (audio[:, 0] + audio[:, 1]), 0.5 * (audio[:, 0] - audio[:, 1])])
        return audio

    def from_signals(self, signals):
        if self.channel_mode == "mid_side" and signals.shape[1] == 2:
            return _columns([signals[:, 0] + signals[:, 1], signals[:, 0] - signals[:, 1]])
        return signals

    def process_block(
        self,
        read,
        frames: int,
        rate: int,
        block: tuple[int, int],
        gains: np.ndarray,
        carry: dict[int, dict[int, np.ndarray]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(denoised, input) file samples [block) as (n, channels); ``read(start, stop)`` gives input frames.

        ``carry`` (one per file, given to each of its blocks in order) keeps the model outputs of the
        chunks a block shares with the next one, so they are run once: blocks then cost what one pass
        does, whatever their length, and the output is the same.
        """
        g = self.grid(rate)
        workers = self.calls_at_once
        signal_workers = min(len(gains), workers)  # one gain per signal
        # Rows in threads only where a batch is run a row at a time anyway (ONNX Runtime): a torch batch is
        # one call, and its rows' results depend on the batch they are in.
        rows_alone = getattr(self.model, "runs_rows_alone", False)
        row_workers = min(workers // signal_workers, self.batch_size) if rows_alone else 1
        # Where rows run alone, a batch holds only the rows that run at once: more would run one after
        # another anyway, and the guard's arrays grow with the batch. Stereo on 2 cores, a thread per channel,
        # two chunks per batch against one: 8-14 % slower in memory (__call__, as evaluation runs it), and
        # through restore_file the same speed for 10-25 MB more peak. The output is the same.
        batch = row_workers if rows_alone else self.batch_size
        carried = None if carry is None else set(carry.get(0, {}))  # the same chunks for every signal
        p = plan_block(g, frames, rate, self.model_rate, block, batch, carried)
        start_f, stop_f = block
        raw = np.asarray(read(p.read0_f, p.read1_f), dtype=np.float64)  # no copy when read gives float64
        x = self.to_signals(raw)
        out = np.empty((stop_f - start_f, x.shape[1]))
        model = self.model

        def signal(i: int) -> None:
            low = resample_to(x[:, i], rate, self.model_rate)
            if p.read1_f == frames:  # the whole signal's resampled length ends here
                low = low[: p.total - p.offset]
            enhanced = enhance_mono(
                model,
                low,
                g.chunk,
                g.overlap,
                batch,
                span=(p.need0, p.run1, p.total),
                offset=p.offset,
                gain=float(gains[i]),
                carry=None if carry is None else carry.setdefault(i, {}),  # one key per thread
                keep_from=p.keep_from,
            )
            wet = self._back(enhanced[p.need0 - p.chunk_start : p.need1 - p.chunk_start], rate)
            del enhanced
            if self.high_band == "pass" and rate > self.model_rate:
                wet += self._high_band(x[:, i], low, p, rate, g)
            del low
            wet = wet[p.first_f : p.first_f + stop_f - start_f]
            dry = x[start_f - p.read0_f : stop_f - p.read0_f, i]
            if len(wet) < len(dry):
                wet = np.pad(wet, (0, len(dry) - len(wet)))
            if self.mix == 1.0:  # the usual case: 1.0 * wet + 0.0 * dry is wet, without two temporaries
                out[:, i] = wet
            else:
                out[:, i] = self.mix * wet + (1.0 - self.mix) * dry

        # The signals (channels, or mid and side) are independent: one thread each, up to the workers. numpy,
        # the FFTs and the network release the GIL, so one signal's numpy work runs while another's network
        # runs, and a stereo block takes about what its slower channel does.
        with ExitStack() as threads:
            if row_workers > 1:  # one pool for every signal's rows: each signal thread keeps row_workers busy
                row_pool = ThreadPoolExecutor(signal_workers * row_workers)
                model = RowsAtOnce(model, threads.enter_context(row_pool))
            if signal_workers > 1:
                pool = threads.enter_context(ThreadPoolExecutor(signal_workers))
                list(pool.map(signal, range(x.shape[1])))  # list(): an exception in a thread is raised here
            else:
                for i in range(x.shape[1]):
                    signal(i)
        return self.from_signals(out), raw[start_f - p.read0_f : stop_f - p.read0_f]

    def _back(self, wave_m: np.ndarray, rate: int) -> np.ndarray:
        """Model-rate samples starting on the shared grid -> file-rate samples (float64) from the matching
        position."""
        return np.asarray(resample_to(wave_m, self.model_rate, rate), dtype=np.float64)

    def _high_band(self, x: np.ndarray, low: np.ndarray, p: BlockPlan, rate: int, g: Grid) -> np.ndarray:
        """What the model cannot see: the input minus its band-limited (model-rate) version."""
        band_limited = self._back(low[p.need0 - p.offset : p.need1 - p.offset], rate)
        first = p.need0 // g.unit_model * g.unit_file - p.read0_f
        original = x[first : first + len(band_limited)]
        return np.pad(original, (0, len(band_limited) - len(original))) - band_limited

    def reset_guard(self) -> None:
        if isinstance(self.model, GuardedDenoiser):
            self.model.guard.reset()

    def guard_share(self) -> float | None:
        """Share of the model's removal the guard put back since ``reset_guard`` (None: no guard)."""
        return self.model.guard.share_restored if isinstance(self.model, GuardedDenoiser) else None

    def describe(self, rate: int) -> str:
        """The log line's account of what was done to a file at ``rate``."""
        nyquist = self.model_rate // 2
        if rate <= self.model_rate:
            band = f"model rate {self.model_rate} Hz covers the whole band"
        elif self.high_band == "pass":
            band = f"denoised up to {nyquist} Hz, above it passed through untouched"
        else:
            band = f"denoised up to {nyquist} Hz, above it dropped"
        share = self.guard_share()
        guard = "guard off" if share is None else f"guard put back {100 * share:.1f} % of the removal"
        return f"mix {self.mix:.2f}, {self.channel_mode} channels, {band}, {guard}"

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Whole (frames, channels) array at once (one block), e.g. for evaluation."""
        frames = len(audio)
        gains = self.levels(self.mean_squares(audio, sample_rate))
        block = (0, frames)
        restored, _ = self.process_block(lambda a, b: audio[a:b], frames, sample_rate, block, gains)
        return restored.astype(np.float32)
