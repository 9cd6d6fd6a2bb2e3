"""The listening report: one HTML page to hear and see what a restoration did.

    from lightning_app.evaluation.listening_report import ReportEntry, write_listening_report
    write_listening_report(
        [ReportEntry("in/a.wav", "out/a.wav", "out/a.residual.wav")], "out"
    )  # -> out/report.html

The page opens with a one-line verdict in plain words (:func:`verdict`: files restored, the mean change of
the noise floor, clicks, the level after vs before, the files where the guard held the model back); the
definitions follow in a collapsed "How to read this page". For each file the page holds, for its loudest
and its quietest passage (``excerpt_seconds``, 4 s, chosen from
the input's short-term RMS in 100 ms frames; the same span cut from all three): players for before / after /
removed (16-bit PCM wav files at the file's rate and channel count, in ``report_files/``) and their
spectrograms side by side on ONE dB scale with one colour bar (the limits are on the image as ``data-vmin``,
``data-vmax`` and, read back from each panel, ``data-clim-before/after/removed``); and the reference-free
figures of :func:`lightning_app.metrics.reference_free.figures` in a table. ``report.csv`` beside the page has
one row per file with the same keys. "Removed" is the residual file when the entry names one, else input −
restored computed for the excerpt.

Long files are never read whole: one streaming pass (soundfile blocks of 60 s) measures the short-term RMS
(and refuses NaN/Inf and silence), then only the excerpts and the measured span are read. The figures are
computed on at most ``measure_seconds`` (180 s) of each file: the whole file when it is shorter, else
30-s spans spread evenly over it, joined with 10 ms fades (no step at a join to count as a click); DNSMOS on
``dnsmos_windows`` (3) 9-s windows spread over that span (its model costs about a second a window on a CPU).
A file that cannot be reported (unreadable, silent, a restored file missing or of another rate or channel
count) gets a row saying why; the report is still written.
"""

from __future__ import annotations

import csv
import html
import logging
import math
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
import soundfile as sf

from lightning_app.data import audio_io
from lightning_app.evaluation import spectrograms
from lightning_app.metrics import dnsmos as D
from lightning_app.metrics import reference_free as RF
from lightning_app.metrics.reference_free import figures

log = logging.getLogger(__name__)

PAGE = "report.html"
TABLE = "report.csv"
FILES = "report_files"
_MARK = ".c2c-listening-report"  # report_files/ is replaced only if this report made it

FRAME_S = 0.1  # short-term RMS frames
EXCERPT_S = 4.0
MEASURE_S = 180.0
SEGMENT_S = 30.0
FADE_S = 0.01
DNSMOS_WINDOWS = 3
BLOCK_S = 60.0
SILENT_DBFS = -100.0  # an input whose RMS is below this has nothing to listen to
RANGE_DB = (
    spectrograms.RANGE_DB
)  # each excerpt's colour scale: its loudest band (rounded up to 5 dB) down to this
TRACKS = ("before", "after", "removed")
LEVEL_MUTED = 0.5  # output / input RMS under this: the verdict warns of muting
LEVEL_LOUDER = 1.25  # over this: LOUDER than the input
INFO_COLUMNS = (
    "index",
    "label",
    "input",
    "restored",
    "residual",
    "content",
    "content_source",
    "status",
    "reason",
    "sample_rate",
    "channels",
    "seconds",
    "measured_seconds",
    "loud_start_s",
    "quiet_start_s",
    "seconds_to_report",
)


class ReportSkip(Exception):
    """A file the report cannot show, with the one-line reason."""


@dataclass(frozen=True)
class ReportEntry:
    """One restored file: its input, the restored file, optionally the residual (input − restored) file,
    the content label ("speech", "music", None = not labelled: DNSMOS, a speech measure, is computed for
    speech only) and the label shown on the page (default: the input's name)."""

    input: Path
    restored: Path
    residual: Path | None = None
    content: str | None = None
    label: str | None = None
    guard_share: float | None = None  # share of the model's removal the do-no-harm guard put back (None: off)
    content_source: str | None = None  # where the content label came from, shown beside it ("music/ folder")

    def __post_init__(self):
        object.__setattr__(self, "input", Path(self.input))
        object.__setattr__(self, "restored", Path(self.restored))
        if self.residual is not None:
            object.__setattr__(self, "residual", Path(self.residual))

    @property
    def name(self) -> str:
        return self.label or self.input.name


def _entry(item) -> ReportEntry:
    if isinstance(item, ReportEntry):
        return item
    if isinstance(item, dict):
        return ReportEntry(**item)
    return ReportEntry(*item)


# ----------------------------------------------------------------------------- reading
def _probe(role: str, path: Path) -> audio_io.AudioInfo:
    try:
        return audio_io.probe(path)
    except audio_io.AudioFileError as exc:
        raise ReportSkip(f"{role} {path}: {exc.reason}") from None


def frame_powers(path: Path, frame: int, frames: int) -> np.ndarray:
    """Mean square (channels pooled) of each ``frame``-sample frame of the first ``frames`` samples, in one
    streaming pass; ReportSkip on NaN/Inf samples or silence."""
    block = frame * max(1, round(BLOCK_S / FRAME_S))
    powers, total = [], 0.0
    with sf.SoundFile(str(path)) as f:
        for start in range(0, frames, block):
            data = f.read(min(block, frames - start), dtype="float32", always_2d=True)
            if not np.all(np.isfinite(data)):
                at = start + int(np.argwhere(~np.isfinite(data))[0, 0])
                raise ReportSkip(f"input {path}: NaN/Inf samples (first at {at / f.samplerate:.2f} s)")
            square = np.square(data, dtype=np.float64).mean(axis=1)
            total += float(square.sum())
            n = len(square) // frame * frame
            powers.append(square[:n].reshape(-1, frame).mean(axis=1))
            if n < len(square):  # the file's last, shorter frame
                powers.append(square[n:].mean(keepdims=True))
    if total == 0.0:
        raise ReportSkip(f"input {path}: digital silence (every sample is zero)")
    level = 10 * math.log10(total / frames)
    if level < SILENT_DBFS:
        raise ReportSkip(f"input {path}: silent (RMS {level:.0f} dBFS < {SILENT_DBFS:g} dBFS)")
    return np.concatenate(powers)


def pick_excerpts(powers: np.ndarray, frame: int, frames: int, length: int) -> list[tuple[str, int, int]]:
    """[(kind, start, frames)]: the loudest and the quietest ``length`` samples by short-term RMS.

    The quietest passage avoids windows holding a frame of digital silence (a transfer's padding is not the
    recording's floor) and, where the file is long enough, the loudest passage. A file shorter than two
    excerpts gets one: the loudest (the whole file if it is shorter than one)."""
    width = max(1, min(len(powers), round(length / frame)))
    sums = np.convolve(powers, np.ones(width), mode="valid")  # window i covers frames i .. i + width - 1
    loud = int(np.argmax(sums))
    out = [("loudest", loud * frame, min(length, frames - loud * frame))]
    if len(powers) < 2 * width:
        return out
    starts = np.arange(len(sums))
    zeros = np.convolve(powers == 0, np.ones(width), mode="valid") > 0
    apart = np.abs(starts - loud) >= width
    for allowed in (apart & ~zeros, apart):
        if allowed.any():
            quiet = int(starts[allowed][np.argmin(sums[allowed])])
            out.append(("quietest", quiet * frame, min(length, frames - quiet * frame)))
            break
    return out


def measured_spans(frames: int, rate: int, measure_seconds: float) -> list[tuple[int, int]]:
    """[(start, frames)] the figures are computed on: the whole file when it fits ``measure_seconds``, else
    spans of SEGMENT_S (30 s; at least 4 spans) spread evenly over it, ``measure_seconds`` in all."""
    budget = int(measure_seconds * rate)
    if frames <= budget:
        return [(0, frames)]
    segment = max(1, min(int(SEGMENT_S * rate), budget // 4))
    count = budget // segment
    return [(int(s), segment) for s in np.linspace(0, frames - segment, count).round()]


def read_span(path: Path, start: int, frames: int) -> np.ndarray:
    with sf.SoundFile(str(path)) as f:
        f.seek(start)
        return f.read(frames, dtype="float32", always_2d=True)


def read_spans(path: Path, spans: list[tuple[int, int]], rate: int) -> np.ndarray:
    """The spans joined, each faded in and out over FADE_S where it meets another (no step at a join)."""
    if len(spans) == 1:
        return read_span(path, *spans[0])
    fade = max(1, int(FADE_S * rate))
    ramp = (0.5 - 0.5 * np.cos(np.linspace(0, np.pi, fade)))[:, None].astype(np.float32)
    parts = []
    for i, span in enumerate(spans):
        x = read_span(path, *span)
        if i > 0:
            x[:fade] *= ramp[: len(x)]
        if i < len(spans) - 1:
            x[-fade:] *= ramp[::-1]
        parts.append(x)
    return np.concatenate(parts)


# ----------------------------------------------------------------------------- measuring
def dnsmos_refusal(content: str | None) -> str | None:
    """Why the page shows no DNSMOS for a file of this content, or None: it is a speech measure, shown for
    files labelled speech only (an unlabelled file may be music)."""
    if content is None:
        return (
            "DNSMOS is a speech measure; not shown for a file with no content label (put speech files in a "
            "speech/ folder, or pass --content speech)"
        )
    if "speech" not in content:
        return f"DNSMOS is a speech measure; not shown for {content}"
    return None


def dnsmos_figures(
    before: np.ndarray, after: np.ndarray, rate: int, content: str | None, windows: int
) -> tuple[dict[str, float], str | None]:
    """DNSMOS before and after, the mean of ``windows`` single 9-s model windows spread over the signals,
    and the reason it is not computed (not labelled speech, the extra missing, ``windows`` 0), or None."""
    out = {f"{k}_{when}": math.nan for when in ("before", "after") for k in D.KEYS}
    reason = (
        dnsmos_refusal(content) or D.dnsmos_missing() or (None if windows > 0 else "DNSMOS not asked for")
    )
    if reason:
        return out, reason
    win = math.ceil(D.WINDOW_S * rate)
    starts = sorted({int(s) for s in np.linspace(0, max(0, len(before) - win), windows).round()})
    for when, signal in (("before", before), ("after", after)):
        scored = [D.score(signal[s : s + win], rate) for s in starts]
        good = [s for s, why in scored if why is None]
        for why in {why for _, why in scored if why}:
            log.warning("DNSMOS not scored on a window: %s", why)
        for k in D.KEYS:
            out[f"{k}_{when}"] = float(np.mean([s[k] for s in good])) if good else math.nan
    return out, None


def spectrogram_png(
    tracks: dict[str, np.ndarray], titles: dict[str, str], rate: int, start_s: float, path: Path
) -> dict[str, object]:
    """The tracks' spectrograms side by side on one colour scale; {"vmin", "vmax", "clim": {track: (lo, hi)},
    "width", "height"}."""
    fig, (scale,) = spectrograms.figure(
        [tracks], rate, titles=titles, xlabel=f"seconds from {_clock(start_s)}"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=fig.dpi)
    width, height = (round(v) for v in fig.get_size_inches() * fig.dpi)
    return {**scale, "width": width, "height": height}


def _clock(seconds: float) -> str:
    m, s = divmod(round(seconds, 1), 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m}:{s:04.1f}"


def _write_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(audio, -1.0, 1.0), rate, subtype="PCM_16")


def analyse(
    entry: ReportEntry,
    folder: Path,
    excerpt_seconds: float = EXCERPT_S,
    measure_seconds: float = MEASURE_S,
    dnsmos_windows: int = DNSMOS_WINDOWS,
) -> dict:
    """Everything the page and the CSV show of one entry; excerpt files go to ``folder``. ReportSkip (or a
    reader's error) when the file cannot be shown."""
    info = _probe("input", entry.input)
    rate, channels = info.sample_rate, info.channels
    frame = max(1, round(FRAME_S * rate))
    powers = frame_powers(entry.input, frame, info.frames)  # the input's own faults are named first
    restored = _probe("restored file", entry.restored)
    residual = _probe("residual file", entry.residual) if entry.residual is not None else None
    for role, other in (("restored file", restored), ("residual file", residual)):
        if other is not None and (other.sample_rate, other.channels) != (rate, channels):
            raise ReportSkip(
                f"{role} {other.path} is {other.sample_rate} Hz, {other.channels} channel(s); the input "
                f"is {rate} Hz, {channels} channel(s)"
            )
    frames = min(i.frames for i in (info, restored, residual) if i is not None)
    powers = powers[: -(-frames // frame)]
    spans = measured_spans(frames, rate, measure_seconds)
    before = read_spans(entry.input, spans, rate)
    after = read_spans(entry.restored, spans, rate)
    if not np.all(np.isfinite(after)):
        raise ReportSkip(f"restored file {entry.restored}: NaN/Inf samples")
    values = figures(before, after, rate, entry.content, dnsmos=False)
    scores, dnsmos_reason = dnsmos_figures(before, after, rate, entry.content, dnsmos_windows)
    values.update(scores)
    if entry.guard_share is not None:
        values["guard_restored_share"] = entry.guard_share
    del before, after
    excerpts = []
    titles = {
        "before": "before (input)",
        "after": "after (restored)",
        "removed": "removed (residual file)" if residual else "removed (input − restored)",
    }
    for kind, start, n in pick_excerpts(powers, frame, frames, int(round(excerpt_seconds * rate))):
        tracks = {"before": read_span(entry.input, start, n), "after": read_span(entry.restored, start, n)}
        tracks["removed"] = (
            read_span(entry.residual, start, n) if residual else tracks["before"] - tracks["after"]
        )
        files = {}
        for name, audio in tracks.items():
            files[name] = folder / f"{kind}-{name}.wav"
            _write_wav(files[name], audio, rate)
        image = folder / f"{kind}.png"
        scale = spectrogram_png(tracks, titles, rate, start / rate, image)
        excerpts.append(
            {
                "kind": kind,
                "start_s": start / rate,
                "seconds": n / rate,
                "image": image,
                "files": files,
                **scale,
            }
        )
    measured = sum(n for _, n in spans) / rate
    return {
        "sample_rate": rate,
        "channels": channels,
        "seconds": frames / rate,
        "measured_seconds": measured,
        "spans": len(spans),
        "figures": values,
        "dnsmos_reason": dnsmos_reason,
        "excerpts": excerpts,
        "titles": titles,
    }


# ----------------------------------------------------------------------------- the page
def _fresh_files_dir(path: Path) -> None:
    """An empty report_files/: the previous report's is removed, a folder this module did not make is
    refused."""
    if path.exists():
        if not (path / _MARK).is_file():
            raise FileExistsError(f"{path} exists and was not written by a listening report; move it away")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / _MARK).write_text(
        "written by lightning_app.evaluation.listening_report; replaced by the next report\n"
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:60] or "file"


def _url(path: Path, output_dir: Path) -> str:
    return quote(path.relative_to(output_dir).as_posix())


def _num(value: float, digits: int = 1, unit: str = "", signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    text = f"{value:{'+' if signed else ''}.{digits}f}"
    if not text.strip("+-0."):  # rounds to zero: no sign
        text = ("±" if signed else "") + text.lstrip("+-")
    return text + unit


BAND_LABELS = {
    "0_100": "0–100 Hz",
    "100_500": "100–500 Hz",
    "500_2k": "0.5–2 kHz",
    "2k_6k": "2–6 kHz",
    "6k_nyq": "6 kHz–Nyquist",
}


def _figures_table(values: dict[str, float], dnsmos_reason: str | None) -> str:
    def row(label, before, after, change):
        return f"<tr><th>{label}</th><td>{before}</td><td>{after}</td><td>{change}</td></tr>"

    v = values.get
    rows = [
        row(
            "noise floor (dBFS, quietest frames)",
            _num(v("noise_floor_db_before")),
            _num(v("noise_floor_db_after")),
            _num(v("noise_floor_change_db"), unit=" dB", signed=True),
        ),
        row(
            "clicks per second",
            _num(v("click_rate_before"), 2),
            _num(v("click_rate_after"), 2),
            _num(v("click_rate_after", math.nan) - v("click_rate_before", math.nan), 2, signed=True),
        ),
        row(
            "level (RMS, dBFS)",
            _num(v("level_db_before")),
            _num(v("level_db_after")),
            _num(v("level_change_db"), unit=" dB", signed=True),
        ),
    ]
    if "guard_restored_share" in values:
        rows.append(
            f"<tr class='guard'><th>do-no-harm guard</th><td colspan='3'>put back "
            f"{_num(100 * values['guard_restored_share'], 1, ' %')} of what the model removed (what did not "
            "look like noise)</td></tr>"
        )
    for k in D.KEYS:
        b, a = v(f"{k}_before", math.nan), v(f"{k}_after", math.nan)
        if dnsmos_reason:
            rows.append(
                f"<tr class='na'><th>DNSMOS SIG / BAK / OVRL</th>"
                f"<td colspan='3'>{html.escape(dnsmos_reason)}</td></tr>"
            )
            break
        rows.append(
            row(
                f"DNSMOS {k.split('_')[1].upper()} (1–5)", _num(b, 2), _num(a, 2), _num(a - b, 2, signed=True)
            )
        )
    bands = [k for k in values if k.startswith("removed_")]
    band_head = "".join(f"<th>{BAND_LABELS.get(k[8:], k[8:])}</th>" for k in bands)
    band_row = "".join(f"<td>{_num(100 * values[k], 0, ' %')}</td>" for k in bands)
    known = {
        "noise_floor_db_before",
        "noise_floor_db_after",
        "noise_floor_change_db",
        "click_rate_before",
        "click_rate_after",
        "level_db_before",
        "level_db_after",
        "level_change_db",
        "guard_restored_share",
        *bands,
        *(f"{k}_{w}" for k in D.KEYS for w in ("before", "after")),
    }
    other = "".join(
        f"<tr><th>{html.escape(k)}</th><td colspan='3'>{_num(x, 3)}</td></tr>"
        for k, x in values.items()
        if k not in known
    )
    return (
        "<table class='figures'><tr><th></th><th>before</th><th>after</th><th>change</th></tr>"
        + "".join(rows)
        + other
        + "</table>"
        + (
            f"<table class='bands'><tr><th>energy removed</th>{band_head}</tr>"
            f"<tr><th>share</th>{band_row}</tr></table>"
        )
    )


def _excerpt_html(ex: dict, titles: dict[str, str], output_dir: Path, label: str) -> str:
    players = "".join(
        f"<figure><figcaption>{html.escape(titles[t])}</figcaption>"
        f"<audio controls preload='metadata' src='{_url(ex['files'][t], output_dir)}' "
        f"data-track='{t}'></audio></figure>"
        for t in TRACKS
    )
    clims = " ".join(f"data-clim-{t}='{lo:g} {hi:g}'" for t, (lo, hi) in ex["clim"].items())
    span = f"{_clock(ex['start_s'])}–{_clock(ex['start_s'] + ex['seconds'])}"
    alt = html.escape(f"spectrograms of {label}, {ex['kind']} passage {span}: before, after, removed")
    return (
        f"<div class='excerpt' data-kind='{ex['kind']}' data-start-s='{ex['start_s']:.3f}' "
        f"data-seconds='{ex['seconds']:.3f}'><h3>{ex['kind'].capitalize()} {ex['seconds']:g} s of the input, "
        f"{span}</h3><div class='players'>{players}</div>"
        f"<img class='spectrogram' src='{_url(ex['image'], output_dir)}' width='{ex['width']}' "
        f"height='{ex['height']}' alt='{alt}' data-vmin='{ex['vmin']:g}' data-vmax='{ex['vmax']:g}' {clims}>"
        f"<p class='scale'>One colour scale for all three: {ex['vmin']:g} to {ex['vmax']:g} dB.</p></div>"
    )


STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1320px;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{margin:1.6em 0 .3em;border-top:2px solid #ccc;padding-top:.6em} \
h3{margin:1em 0 .3em;font-size:1em}
.meta,.facts,.scale{color:#555;font-size:.9em;margin:.2em 0}
.verdict{font-size:1.1em;font-weight:600;margin:.3em 0 .5em}
.notes{background:#f4f4f0;border-left:4px solid #b90;padding:.5em 1em;font-size:.92em;margin:.8em 0}
.notes summary{cursor:pointer;font-weight:600}
table{border-collapse:collapse;margin:.5em 1.5em .5em 0;font-size:.9em;\
display:inline-table;vertical-align:top}
th,td{border:1px solid #ddd;padding:.2em .6em;text-align:right} th{background:#f6f6f6;text-align:left}
tr.na td{text-align:left;color:#777;font-style:italic} td.reason{text-align:left}
.players{display:grid;grid-template-columns:repeat(3,1fr);gap:1em;margin-right:4%}
.players figure{margin:0} .players figcaption{font-size:.85em;color:#444} audio{width:100%}
img.spectrogram{width:100%;height:auto;display:block;margin-top:.3em}
.skipped .reason{color:#a00}
"""


GUARD_HELD_BACK = 0.1  # a file where the guard put back at least this share of the model's removal


def verdict(rows: list[dict], results: list[dict | None]) -> str:
    """The page's first line, in plain words, from the figures it shows: files restored, the mean noise-floor
    change, clicks before and after, the level after vs before (with the level alarms), the files where the
    guard held the model back, and the files not reported."""
    done = [r["figures"] for r in results if r is not None]
    skipped = len(rows) - len(done)
    if not done:
        return f"No file could be reported ({skipped} skipped: the reasons are below)."

    def mean(key):
        values = [f.get(key, math.nan) for f in done]
        values = [v for v in values if math.isfinite(v)]
        return float(np.mean(values)) if values else math.nan

    parts = []
    floor = mean("noise_floor_change_db")
    if math.isfinite(floor):
        if abs(floor) < 0.5:
            parts.append("noise floor unchanged (within 0.5 dB) on average")
        else:
            parts.append(f"noise floor {'down' if floor < 0 else 'UP'} {abs(floor):.1f} dB on average")
    before, after = mean("click_rate_before"), mean("click_rate_after")
    if math.isfinite(before) and math.isfinite(after):
        parts.append(f"clicks {before:.2f} → {after:.2f} per second")
    ratios = [
        10 ** (f["level_change_db"] / 20) for f in done if math.isfinite(f.get("level_change_db", math.nan))
    ]
    if ratios:
        level = float(np.mean(ratios))
        muted = sum(r < LEVEL_MUTED for r in ratios)
        louder = sum(r > LEVEL_LOUDER for r in ratios)
        if level < LEVEL_MUTED:
            words = f"level DOWN to x{level:.2f} of the input: check for muting"
        elif level > LEVEL_LOUDER:
            words = f"LOUDER than the input (x{level:.2f})"
        elif level < 0.9:
            words = f"level x{level:.2f} of the input (noise removed takes some level with it)"
        else:
            words = f"level kept (x{level:.2f} of the input)"
        flags = [
            f"{n} file{'s' if n > 1 else ''} {what}"
            for n, what in ((muted, "under half the input's level"), (louder, "LOUDER than the input"))
            if n and len(done) > 1
        ]
        parts.append(words + (f" ({'; '.join(flags)})" if flags else ""))
    text = f"Restored {len(done)} file{'s' if len(done) > 1 else ''}: " + ", ".join(parts)
    shares = [f["guard_restored_share"] for f in done if "guard_restored_share" in f]
    if shares:
        held = sum(x >= GUARD_HELD_BACK for x in shares)
        text += (
            f"; {held} file{'s' if held != 1 else ''} where the guard held the model back (put back "
            f"{100 * GUARD_HELD_BACK:g} % or more of what it removed)"
            if held
            else f"; the guard put back under {100 * GUARD_HELD_BACK:g} % of the removal on every file"
        )
    if skipped:
        text += f"; {skipped} file{'s' if skipped > 1 else ''} not reported (the reasons are below)"
    return text + "."


def _page(
    title: str,
    rows: list[dict],
    results: list[dict | None],
    output_dir: Path,
    notes: list[str],
    elapsed: float,
) -> str:
    ok = sum(r["status"] == "ok" for r in rows)
    index = [
        "<table class='index'><tr><th>#</th><th>file</th><th>status</th><th>noise floor change</th>"
        "<th>clicks/s before → after</th><th>level change</th></tr>"
    ]
    body = []
    for row, result in zip(rows, results, strict=True):
        anchor = f"file-{row['index']:02d}"
        name = html.escape(row["label"])
        if result is None:
            index.append(
                f"<tr><td>{row['index']}</td><td><a href='#{anchor}'>{name}</a></td>"
                f"<td class='reason' colspan='4'>skipped: {html.escape(row['reason'])}</td></tr>"
            )
            body.append(
                f"<article class='file skipped' id='{anchor}' data-status='skipped'><h2>{row['index']:02d} · "
                f"{name}</h2><p class='reason'>Not reported: {html.escape(row['reason'])}</p></article>"
            )
            continue
        f = result["figures"]
        index.append(
            f"<tr><td>{row['index']}</td><td><a href='#{anchor}'>{name}</a></td><td>ok</td>"
            f"<td>{_num(f.get('noise_floor_change_db', math.nan), unit=' dB', signed=True)}</td>"
            f"<td>{_num(f.get('click_rate_before', math.nan), 2)} → "
            f"{_num(f.get('click_rate_after', math.nan), 2)}</td>"
            f"<td>{_num(f.get('level_change_db', math.nan), unit=' dB', signed=True)}</td></tr>"
        )
        if result["measured_seconds"] < result["seconds"]:
            measured = (
                f"figures measured on {result['measured_seconds']:g} s of {_clock(result['seconds'])}: "
                f"{result['spans']} spans of {result['measured_seconds'] / result['spans']:g} s spread over "
                "the file"
            )
        else:
            measured = "figures measured on the whole file"
        content = row["content"] or "not labelled"
        if row.get("content_source"):
            content += f" ({row['content_source']})"
        facts = (
            f"{html.escape(row['input'])} → {html.escape(row['restored'])} · {_clock(result['seconds'])}, "
            f"{result['sample_rate']} Hz, {result['channels']} channel(s), content: {html.escape(content)} · "
            f"{measured}"
        )
        body.append(
            f"<article class='file' id='{anchor}' data-status='ok'><h2>{row['index']:02d} · {name}</h2>"
            f"<p class='facts'>{facts}</p>{_figures_table(f, result['dnsmos_reason'])}"
            + "".join(
                _excerpt_html(ex, result["titles"], output_dir, row["label"]) for ex in result["excerpts"]
            )
            + "</article>"
        )
    index.append("</table>")
    note_html = "".join(f"<p>{n}</p>" for n in notes)
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p class='verdict'>{html.escape(verdict(rows, results))}</p>"
        f"<p class='meta'>{ok} of {len(rows)} file(s) reported · "
        f"written {time.strftime('%Y-%m-%d %H:%M')} in "
        f"{elapsed:.0f} s · figures also in <a href='{TABLE}'>{TABLE}</a></p>"
        f"{''.join(index)}<details class='notes'><summary>How to read this page: the excerpts, the figures, "
        f"DNSMOS</summary>{note_html}</details>{''.join(body)}</body></html>\n"
    )


def _notes(excerpt_seconds: float, measure_seconds: float, dnsmos_windows: int) -> list[str]:
    return [
        f"<b>Excerpts.</b> For each file the loudest and the quietest {excerpt_seconds:g} s of the input "
        f"(by its RMS in {FRAME_S * 1000:.0f} ms frames; the quietest avoids digital silence), the same span "
        "cut from the input (before), the restored file (after) and what was removed (the residual file, or "
        "input − restored). The players are 16-bit copies at the file's rate. The three spectrograms of an "
        f"excerpt share one colour scale (its loudest bin down {RANGE_DB:g} dB), so a colour means the same "
        "level in all three.",
        f"<b>Figures</b> are reference-free (no clean original exists): noise floor = "
        f"{RF.NOISE_PERCENTILE:g}th percentile of {RF.NOISE_FRAME_S * 1000:g} ms frame levels (an upper "
        "bound where the file has few pauses); clicks = short impulsive events per second; level change = "
        "RMS after vs before; energy removed per band = 1 − after/before (negative: energy added). They "
        f"are computed on at most {measure_seconds:g} s of each file: the whole file when it is shorter, "
        f"else spans of up to {SEGMENT_S:g} s spread evenly over it (joined with 10 ms fades).",
        "<b>DNSMOS is a speech measure</b> (ITU-T P.835 ratings predicted by a model trained on speech: "
        "SIG speech, BAK background, OVRL overall, 1–5). It is shown for files labelled speech only (a "
        "speech/ folder, or evaluate --content speech): not for music, nor for files with no content label, "
        f"which may be music. Computed on {dnsmos_windows} 9-s windows spread over the measured span.",
        "<b>Level</b> is the RMS level of the measured span in dBFS, before and after; the first line gives "
        "it as a ratio, after / before (removing loud noise lowers it a little; under "
        f"{LEVEL_MUTED:g} the output may be muted, over {LEVEL_LOUDER:g} it is LOUDER than the input). "
        "The do-no-harm guard puts back what the model removed that did not look like noise; the first line "
        f"counts the files where it put back {100 * GUARD_HELD_BACK:g} % or more.",
    ]


def write_listening_report(
    entries,
    output_dir,
    *,
    title: str = "Listening report",
    excerpt_seconds: float = EXCERPT_S,
    measure_seconds: float = MEASURE_S,
    dnsmos_windows: int = DNSMOS_WINDOWS,
) -> Path:
    """Write ``output_dir/report.html`` (+ ``report.csv`` and ``report_files/``) for ``entries`` —
    :class:`ReportEntry` items, or (input, restored[, residual[, content[, label]]]) tuples or dicts — and
    return the page's path. A file that cannot be reported gets a row with the reason; never an exception
    for one file."""
    started = time.perf_counter()
    output_dir = Path(output_dir)
    files_dir = output_dir / FILES
    _fresh_files_dir(files_dir)
    rows, results = [], []
    for index, item in enumerate(entries, 1):
        entry = _entry(item)
        row = {
            "index": index,
            "label": entry.name,
            "input": str(entry.input),
            "restored": str(entry.restored),
            "residual": str(entry.residual or ""),
            "content": entry.content or "",
            "content_source": entry.content_source or "",
            "status": "ok",
            "reason": "",
        }
        t0 = time.perf_counter()
        try:
            result = analyse(
                entry,
                files_dir / f"{index:02d}-{_slug(entry.name)}",
                excerpt_seconds,
                measure_seconds,
                dnsmos_windows,
            )
        except ReportSkip as exc:
            result, reason = None, str(exc)
        except Exception as exc:  # a reader's or a figure's error on one file must not stop the report
            result, reason = None, f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        if result is None:
            row.update(status="skipped", reason=reason)
            log.warning("listening report: %s skipped: %s", entry.name, reason)
        else:
            starts = {ex["kind"]: round(ex["start_s"], 3) for ex in result["excerpts"]}
            row.update(
                sample_rate=result["sample_rate"],
                channels=result["channels"],
                seconds=round(result["seconds"], 3),
                measured_seconds=round(result["measured_seconds"], 3),
                loud_start_s=starts.get("loudest", ""),
                quiet_start_s=starts.get("quietest", ""),
                **result["figures"],
            )
        row["seconds_to_report"] = round(time.perf_counter() - t0, 2)
        rows.append(row)
        results.append(result)
    keys = list(dict.fromkeys(k for r in rows for k in r if k not in INFO_COLUMNS))
    with open(output_dir / TABLE, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*INFO_COLUMNS, *keys], restval="")
        writer.writeheader()
        for r in rows:
            writer.writerow(
                {k: ("" if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
            )
    page = output_dir / PAGE
    with audio_io.atomic_text(page) as f:
        f.write(
            _page(
                title,
                rows,
                results,
                output_dir,
                _notes(excerpt_seconds, measure_seconds, dnsmos_windows),
                time.perf_counter() - started,
            )
        )
    log.info("listening report: %s", verdict(rows, results))
    log.info("listening report: %s (%d file(s), %.1f s)", page, len(rows), time.perf_counter() - started)
    return page
