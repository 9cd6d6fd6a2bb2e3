"""The listening report: page, excerpts, shared colour scale, CSV, bad files — checked in headless
Chromium.
"""

from __future__ import annotations

import csv
import html
import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lightning_app.evaluation import listening_report as LR
from lightning_app.evaluation.listening_report import ReportEntry, write_listening_report

CORE = (
    "noise_floor_db_before",
    "noise_floor_db_after",
    "noise_floor_change_db",
    "click_rate_before",
    "click_rate_after",
    "level_change_db",
    "removed_0_100",
    "removed_2k_6k",
    "removed_6k_nyq",
)
DNSMOS = tuple(f"dnsmos_{k}_{w}" for k in ("sig", "bak", "ovrl") for w in ("before", "after"))


def make_recording(
    folder: Path,
    name: str,
    seconds: float,
    rate: int,
    channels: int,
    seed: int,
    loud_at: float,
    quiet_at: float,
    residual: bool = True,
) -> dict:
    """Tone + hiss + clicks with one loud and one quiet 4-s passage: input, a "restored" version (hiss 20 dB
    down, clicks gone) and its residual; returns the paths."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    envelope = np.full(n, 0.25)
    envelope[int(loud_at * rate) : int((loud_at + 4) * rate)] = 0.9
    envelope[int(quiet_at * rate) : int((quiet_at + 4) * rate)] = 0.001
    tone = envelope * (
        0.45 * np.sin(2 * np.pi * 220 * t)
        + 0.2 * np.sin(2 * np.pi * 660 * t)
        + 0.1 * np.sin(2 * np.pi * 1320 * t)
    )
    clean = tone[:, None] * np.linspace(1.0, 0.7, channels)
    hiss = 0.01 * rng.standard_normal((n, channels))
    clicks = np.zeros((n, channels))
    for at in rng.integers(0, n - 8, int(3 * seconds)):
        clicks[at : at + 3] += rng.choice([-0.4, 0.4])
    noisy, restored = clean + hiss + clicks, clean + 0.1 * hiss
    paths = {
        "input": folder / f"{name}.wav",
        "restored": folder / "restored" / f"{name}.wav",
        "residual": folder / "restored" / f"{name}.residual.wav" if residual else None,
    }
    paths["restored"].parent.mkdir(parents=True, exist_ok=True)
    sf.write(paths["input"], noisy.astype(np.float32), rate, subtype="PCM_16")
    sf.write(paths["restored"], restored.astype(np.float32), rate, subtype="PCM_16")
    if residual:
        sf.write(paths["residual"], (noisy - restored).astype(np.float32), rate, subtype="PCM_16")
    return paths


FILES = {  # name: (seconds, rate, channels, content, loud_at, quiet_at, residual file)
    "stereo44": (10.0, 44100, 2, "music", 1.0, 6.0, True),
    "mono48": (10.0, 48000, 1, "speech", 5.5, 0.5, False),  # labelled speech: DNSMOS computed
    "stereo48": (9.0, 48000, 2, "music", 4.5, 0.2, True),
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("listening")
    entries, made = [], {}
    for seed, (name, (seconds, rate, channels, content, loud, quiet, residual)) in enumerate(FILES.items()):
        made[name] = make_recording(folder, name, seconds, rate, channels, seed, loud, quiet, residual)
        entries.append(
            ReportEntry(made[name]["input"], made[name]["restored"], made[name]["residual"], content)
        )
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all")
    sf.write(folder / "silent.wav", np.zeros((48000, 2), np.float32), 48000)
    entries += [
        ReportEntry(folder / "broken.wav", folder / "restored" / "broken.wav"),
        (folder / "silent.wav", folder / "restored" / "silent.wav"),
    ]  # a plain tuple works too
    out = folder / "report"
    page = write_listening_report(entries, out, dnsmos_windows=1)
    with open(out / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {"page": page, "out": out, "rows": rows, "made": made, "html": page.read_text()}


class _Elements(HTMLParser):
    """Every element's attributes, by tag."""

    def __init__(self):
        super().__init__()
        self.tags: dict[str, list[dict]] = {}

    def handle_starttag(self, tag, attrs):
        self.tags.setdefault(tag, []).append(dict(attrs))


def elements(text: str) -> dict[str, list[dict]]:
    parser = _Elements()
    parser.feed(text)
    return parser.tags


# ----------------------------------------------------------------------------- in the browser
def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--mute-audio",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


CHECK = """<pre id="c2c-check">pending</pre><script>
window.addEventListener('load', async () => {
  const images = [...document.images].map(i => ({src: i.currentSrc, ok: i.complete && i.naturalWidth > 0,
                                                 width: i.naturalWidth}));
  const audio = await Promise.all([...document.querySelectorAll('audio')].map(a => new Promise(done => {
    const report = state => done({src: a.currentSrc, state, duration: a.duration});
    if (a.readyState >= 1) return report('metadata');
    a.addEventListener('loadedmetadata', () => report('metadata'));
    a.addEventListener('error', () => report('error ' + (a.error && a.error.code)));
    setTimeout(() => report('timeout'), 20000);
  })));
  document.getElementById('c2c-check').textContent = JSON.stringify({images, audio});
});
</script></body>"""


@pytest.mark.slow
def test_images_and_audio_load_in_headless_chromium(report, tmp_path):
    # The page itself plus a script that waits for every image and every player's metadata, in the
    # page's own folder so every relative link resolves as it does for the real page.
    wrapper = report["out"] / "chromium-check.html"
    wrapper.write_text(report["html"].replace("</body>", CHECK))
    try:
        done = run_chromium(tmp_path, "--virtual-time-budget=30000", "--dump-dom", wrapper.as_uri())
    finally:
        wrapper.unlink()
    found = re.search(r'<pre id="c2c-check">(.*?)</pre>', done.stdout, re.S)
    assert found, f"chromium gave no DOM (rc {done.returncode}): {done.stderr[-2000:]}"
    checks = json.loads(html.unescape(found.group(1)))
    ok_files = len(FILES)
    assert len(checks["images"]) == 2 * ok_files  # loudest + quietest per reported file
    assert all(i["ok"] and i["width"] > 500 for i in checks["images"]), checks["images"]
    assert len(checks["audio"]) == 2 * 3 * ok_files  # before / after / removed per excerpt
    for a in checks["audio"]:
        assert a["src"].startswith("file://") and a["src"].endswith(".wav"), a
        assert a["state"] == "metadata" and a["duration"] == pytest.approx(4.0, abs=0.01), a


def test_screenshot_in_headless_chromium_is_not_blank(report, tmp_path):
    shot = tmp_path / "report.png"
    done = run_chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,2400", report["page"].as_uri())
    assert shot.is_file(), done.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1400)
    assert pixels.std() > 0.1  # text, tables and spectrograms, not an empty or error page
    assert (pixels.mean(axis=2) < 0.3).mean() > 0.05  # the dark spectrograms are on it


# ----------------------------------------------------------------------------- the page's content
def test_excerpts_are_the_loudest_and_quietest_passages_as_small_wavs(report):
    made = report["made"]
    divs = [d for d in elements(report["html"]).get("div", []) if d.get("class") == "excerpt"]
    assert len(divs) == 2 * len(FILES)
    starts = {(d["data-kind"]): [] for d in divs}
    for d in divs:
        starts[d["data-kind"]].append(float(d["data-start-s"]))
    for i, (name, (_, rate, channels, _, loud, quiet, _)) in enumerate(FILES.items()):
        assert starts["loudest"][i] == pytest.approx(loud, abs=0.1)
        assert starts["quietest"][i] == pytest.approx(quiet, abs=0.1)
        folder = next(report["out"].glob(f"report_files/{i + 1:02d}-*"))
        for kind in ("loudest", "quietest"):
            for track in LR.TRACKS:
                info = sf.info(str(folder / f"{kind}-{track}.wav"))
                assert (info.samplerate, info.channels, info.subtype) == (rate, channels, "PCM_16")
                assert info.frames == 4 * rate
        # the excerpt is the input's own samples at that span
        cut, _ = sf.read(folder / "loudest-before.wav", always_2d=True)
        source, _ = sf.read(made[name]["input"], start=round(loud * rate), frames=4 * rate, always_2d=True)
        np.testing.assert_allclose(cut, source, atol=1 / 32768)
    sources = [a["src"] for a in elements(report["html"])["audio"]]
    assert all(not s.startswith("/") and (report["out"] / s).is_file() for s in sources)  # relative links


def test_spectrograms_of_an_excerpt_share_one_db_scale(report):
    images = [i for i in elements(report["html"])["img"] if i.get("class") == "spectrogram"]
    assert len(images) == 2 * len(FILES)
    for image in images:
        vmin, vmax = float(image["data-vmin"]), float(image["data-vmax"])
        assert math.isfinite(vmin) and vmax - vmin == LR.RANGE_DB
        clims = {t: tuple(map(float, image[f"data-clim-{t}"].split())) for t in LR.TRACKS}
        assert set(clims.values()) == {(vmin, vmax)}  # read back from each panel's image
        assert (report["out"] / image["src"]).stat().st_size > 10_000
    # the quiet passage's scale sits well below the loud one's
    by_file = [images[i : i + 2] for i in range(0, len(images), 2)]
    assert all(float(q["data-vmax"]) < float(ld["data-vmax"]) - 20 for ld, q in by_file)


def test_csv_has_a_row_per_file_with_finite_figures(report):
    rows = report["rows"]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "skipped", "skipped"]
    for row, (seconds, rate, channels, content, *_) in zip(rows[: len(FILES)], FILES.values(), strict=True):
        assert (int(row["sample_rate"]), int(row["channels"])) == (rate, channels)
        assert float(row["measured_seconds"]) == pytest.approx(seconds)
        values = {k: float(row[k]) for k in CORE}
        assert all(math.isfinite(v) for v in values.values()), row
        assert values["noise_floor_db_after"] < values["noise_floor_db_before"] - 10  # hiss 20 dB down
        assert values["click_rate_before"] > 1.0 > values["click_rate_after"]
        assert values["removed_6k_nyq"] > 0.9
        if content == "music":
            assert all(row[k] == "" for k in DNSMOS)  # a speech measure: not computed for music
        else:
            assert all(1.0 <= float(row[k]) <= 5.0 for k in DNSMOS)
    assert "not a readable audio file" in rows[3]["reason"]
    assert "digital silence" in rows[4]["reason"]


def test_page_says_what_dnsmos_is_and_why_files_were_skipped(report):
    text = report["html"]
    assert "DNSMOS is a speech measure" in text and "not for music" in text
    assert text.count("DNSMOS is a speech measure; not shown for music") == 2  # the music files' tables
    assert "DNSMOS SIG (1–5)" in text  # the speech file's
    assert text.count("data-status='skipped'") == 2
    assert "digital silence (every sample is zero)" in text and "not a readable audio file" in text
    assert "figures measured on the whole file" in text


def test_long_file_is_read_in_parts_and_measured_on_spread_spans(tmp_path, monkeypatch):
    paths = make_recording(tmp_path, "long", 60.0, 16000, 1, 7, loud_at=40.0, quiet_at=20.0)
    read = []
    original = LR.read_span
    monkeypatch.setattr(
        LR, "read_span", lambda path, start, frames: read.append(frames) or original(path, start, frames)
    )
    page = write_listening_report(
        [ReportEntry(paths["input"], paths["restored"], paths["residual"], "music")],
        tmp_path / "out",
        measure_seconds=12.0,
    )
    row = next(csv.DictReader(open(tmp_path / "out" / "report.csv")))
    assert row["status"] == "ok" and float(row["measured_seconds"]) == pytest.approx(12.0)
    assert float(row["loud_start_s"]) == pytest.approx(40.0, abs=0.1)
    assert float(row["quiet_start_s"]) == pytest.approx(20.0, abs=0.1)
    # besides the one streaming pass: 12 s of input and of restored audio, and 3 × 2 excerpts of 4 s
    assert sum(read) == (2 * 12 + 3 * 2 * 4) * 16000
    assert "figures measured on 12 s of 1:00.0: 4 spans of 3 s spread over the file" in page.read_text()


def test_restored_file_of_another_rate_is_a_row_not_a_crash(tmp_path):
    paths = make_recording(tmp_path, "a", 9.0, 44100, 2, 3, loud_at=1.0, quiet_at=5.0, residual=False)
    sf.write(paths["restored"], np.zeros((16000, 2), np.float32) + 0.1, 16000)
    write_listening_report(
        [
            ReportEntry(paths["input"], paths["restored"]),
            ReportEntry(paths["input"], tmp_path / "missing.wav"),
        ],
        tmp_path / "out",
    )
    rows = list(csv.DictReader(open(tmp_path / "out" / "report.csv")))
    assert [r["status"] for r in rows] == ["skipped", "skipped"]
    assert "is 16000 Hz, 2 channel(s); the input is 44100 Hz, 2 channel(s)" in rows[0]["reason"]
    assert "no such file" in rows[1]["reason"]


def test_report_files_folder_not_made_by_a_report_is_left_alone(tmp_path):
    (tmp_path / "report_files").mkdir()
    (tmp_path / "report_files" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not written by a listening report"):
        write_listening_report([], tmp_path)
    assert (tmp_path / "report_files" / "mine.txt").read_text() == "keep"


# ----------------------------------------------------------------------------- evaluate on a folder without
# clean/
@pytest.mark.slow
def test_evaluate_folder_without_clean_restores_and_writes_the_listening_report(
    tmp_path, trained_run, monkeypatch, capsys
):
    from lightning_app import evaluate as E

    data = tmp_path / "archive"
    make_recording(data / "music", "side_a", 9.0, 44100, 2, 1, loud_at=1.0, quiet_at=5.0, residual=False)
    shutil.rmtree(data / "music" / "restored")  # only the noisy files
    (data / "broken.wav").write_bytes(b"not audio")
    out = tmp_path / "evaluation"
    assert (
        E.main(["--data", str(data), str(trained_run["best"]), "--output-dir", str(out)]) == 1
    )  # one skipped
    assert "Content: music 1 (their folder), not labelled 1 (" in capsys.readouterr().out
    rows = list(csv.DictReader(open(out / "report.csv")))
    by_label = {r["label"]: r for r in rows}
    assert set(by_label) == {"music/side_a.wav", "broken.wav"}
    good = by_label["music/side_a.wav"]
    assert (
        good["status"] == "ok" and good["content"] == "music" and good["residual"].endswith(".residual.wav")
    )
    assert all(math.isfinite(float(good[k])) for k in CORE)
    assert Path(good["restored"]).is_file() and Path(good["restored"]).is_relative_to(out / "restored")
    assert "not a readable audio file" in by_label["broken.wav"]["reason"]
    assert (out / "report.html").is_file() and not (out / "report.md").exists()

    # no checkpoint: the bundled model restores

    from lightning_app.evaluation import pipeline

    monkeypatch.setattr(pipeline, "bundled_model", lambda: Path(trained_run["best"]))
    (data / "broken.wav").unlink()
    assert E.main(["--data", str(data), "--output-dir", str(tmp_path / "bundled")]) == 0


def test_the_guards_share_is_shown_per_file_and_in_the_csv(tmp_path):
    paths = make_recording(tmp_path, "g", 6.0, 16000, 1, 5, loud_at=1.0, quiet_at=4.0)
    page = write_listening_report(
        [
            ReportEntry(paths["input"], paths["restored"], paths["residual"], "music", guard_share=0.25),
            ReportEntry(paths["input"], paths["restored"], paths["residual"], "music", "off"),
        ],
        tmp_path / "out",
    )
    text = page.read_text()
    assert text.count("<tr class='guard'>") == 1, "one file restored with the guard, one without"
    assert "put back 25.0 % of what the model removed" in text
    rows = list(csv.DictReader(open(tmp_path / "out" / "report.csv")))
    assert (
        float(rows[0]["guard_restored_share"]) == pytest.approx(0.25)
        and rows[1]["guard_restored_share"] == ""
    )


# ----------------------------------------------------------------------------- the verdict, the level, DNSMOS
def test_the_page_opens_with_a_plain_verdict_and_folds_the_definitions(report):
    text = report["html"]
    first = re.search(r"<p class='verdict'>(.*?)</p>", text)
    assert first and text.index("class='verdict'") < text.index("<table") < text.index("<details")
    line = html.unescape(first.group(1))
    # three files restored, the hiss 20 dB down in each (the floor figure), clicks gone, level about kept
    floors = [float(r["noise_floor_change_db"]) for r in report["rows"][:3]]
    assert f"Restored 3 files: noise floor down {abs(sum(floors) / 3):.1f} dB on average" in line, line
    assert re.search(r"clicks \d+\.\d\d → 0\.\d\d per second", line), line
    assert re.search(r"level (kept|x0\.\d\d of the input)", line), line
    assert "2 files not reported" in line
    assert "<summary>How to read this page" in text and "Excerpts.</b>" in text.split("<details")[1]


def test_the_level_row_shows_the_level_before_and_after(report):
    cells = re.findall(
        r"<tr><th>level \(RMS, dBFS\)</th><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", report["html"]
    )
    assert len(cells) == 3
    for (before, after, change), row in zip(cells, report["rows"], strict=False):
        assert float(before) == pytest.approx(float(row["level_db_before"]), abs=0.06)
        assert float(after) == pytest.approx(float(row["level_db_after"]), abs=0.06)
        assert float(change.replace(" dB", "").replace("±", "")) == pytest.approx(
            float(row["level_db_after"]) - float(row["level_db_before"]), abs=0.11
        )


def test_dnsmos_is_shown_for_speech_only_and_says_why_elsewhere(tmp_path, monkeypatch):
    from lightning_app.metrics import dnsmos as D

    monkeypatch.setattr(
        D, "score", lambda *a: pytest.fail("DNSMOS must not run on music or unlabelled files")
    )
    paths = make_recording(tmp_path, "tones", 6.0, 16000, 1, 4, loud_at=1.0, quiet_at=4.0)
    page = write_listening_report(
        [
            ReportEntry(paths["input"], paths["restored"], paths["residual"], None),
            ReportEntry(paths["input"], paths["restored"], paths["residual"], "music", "as music"),
        ],
        tmp_path / "out",
    )
    text = page.read_text()
    assert "DNSMOS is a speech measure; not shown for a file with no content label" in text
    assert "pass --content speech" in text
    assert "DNSMOS is a speech measure; not shown for music" in text
    assert "DNSMOS SIG (1–5)" not in text
    rows = list(csv.DictReader(open(tmp_path / "out" / "report.csv")))
    assert all(r[k] == "" for r in rows for k in DNSMOS)


def test_the_verdict_counts_files_the_guard_held_back_and_flags_a_louder_output(tmp_path):
    paths = make_recording(tmp_path, "g", 6.0, 16000, 1, 5, loud_at=1.0, quiet_at=4.0)
    loud = tmp_path / "restored" / "loud.wav"
    audio, rate = sf.read(paths["input"])
    sf.write(loud, np.clip(4.0 * audio, -1, 1), rate)
    entries = [
        ReportEntry(paths["input"], paths["restored"], paths["residual"], "music", "a", guard_share=0.3),
        ReportEntry(paths["input"], paths["restored"], paths["residual"], "music", "b", guard_share=0.02),
    ]
    line = LR.verdict(
        [{"status": "ok"}] * 2,
        [LR.analyse(e, tmp_path / f"f{i}", dnsmos_windows=0) for i, e in enumerate(entries)],
    )
    assert "1 file where the guard held the model back (put back 10 % or more of what it removed)" in line
    page = write_listening_report(
        [ReportEntry(paths["input"], loud, None, "music", guard_share=0.0)], tmp_path / "out"
    )
    line = html.unescape(re.search(r"<p class='verdict'>(.*?)</p>", page.read_text()).group(1))
    assert re.search(r"LOUDER than the input \(x[23]\.\d\d\)", line), line
    assert "the guard put back under 10 % of the removal on every file" in line
    assert "put back 0.0 % of what the model removed" in page.read_text()  # the guard's row stays
