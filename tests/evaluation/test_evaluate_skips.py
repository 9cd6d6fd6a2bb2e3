"""A paired corpus with bad pairs: evaluate scores the good ones, lists the bad ones with reasons and
says so.
"""

import csv
import math

import numpy as np
import pytest
import soundfile as sf

from lightning_app import evaluate

RATE = 16000
ARGS = ["--no-baselines", "--workers", "1", "--visqol-clips", "0"]


def _tone(n, rate=RATE):
    return 0.2 * np.sin(2 * np.pi * 220 * np.arange(n) / rate)


def _corpus(root, good=("good1.wav", "good2.wav", "sub/good3.wav")):
    rng = np.random.default_rng(0)
    for name in good:
        for side in ("noisy", "clean"):
            (root / side / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / "clean" / name, _tone(RATE), RATE)
        sf.write(root / "noisy" / name, _tone(RATE) + 0.05 * rng.standard_normal(RATE), RATE)
    return root


def _bad_pairs(root):
    """(a) no clean partner, (b) rates differ, (c) garbage bytes, (d) silent clean reference."""
    for side in ("noisy", "clean"):
        (root / side).mkdir(parents=True, exist_ok=True)
    sf.write(root / "noisy" / "orphan.wav", _tone(RATE), RATE)
    sf.write(root / "noisy" / "rates.wav", _tone(RATE), RATE)
    sf.write(root / "clean" / "rates.wav", _tone(22050, 22050), 22050)
    (root / "noisy" / "garbage.wav").write_bytes(b"RIFF\x00 not audio at all " * 40)
    sf.write(root / "clean" / "garbage.wav", _tone(RATE), RATE)
    sf.write(root / "noisy" / "silent.wav", 0.05 * np.random.default_rng(1).standard_normal(RATE), RATE)
    sf.write(root / "clean" / "silent.wav", np.zeros(RATE), RATE)
    return {
        "orphan.wav": "no clean partner",
        "rates.wav": "sample rate 16000 Hz differs",
        "garbage.wav": "not a readable audio file",
        "silent.wav": "silent clean reference",
    }


@pytest.mark.slow
def test_bad_pairs_are_skipped_with_reasons_and_the_good_ones_are_scored(tmp_path, capsys):
    corpus = _corpus(tmp_path / "corpus")
    expected = _bad_pairs(corpus)
    out = tmp_path / "eval"
    assert (
        evaluate.main(["--data", str(corpus), "--output-dir", str(out), *ARGS]) == 1
    )  # 1: something skipped
    assert (
        capsys.readouterr().err.strip().splitlines()[-1]
        == f"evaluated 3 pairs, skipped 4 (see {out / 'report.md'}#skipped)"
    )

    skipped = {r["file"]: r["reason"] for r in csv.DictReader(open(out / "skipped.csv"))}
    assert set(skipped) == set(expected)
    for name, problem in expected.items():
        assert problem in skipped[name] and name in skipped[name] and "\n" not in skipped[name], skipped[name]
    assert skipped["silent.wav"].startswith("clean/silent.wav:") and skipped["garbage.wav"].startswith(
        "noisy/garbage.wav:"
    )

    report = (out / "report.md").read_text()
    assert "(3 files, 4 skipped)" in report and "\n## Skipped\n" in report
    section = report.split("\n## Skipped\n")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| file ")]
    assert sorted(r.split(" | ")[0][2:] for r in rows) == sorted(expected)
    assert all(f"| {name} | {skipped[name]} |" in section for name in expected)

    overall = next(
        r
        for r in csv.DictReader(open(out / "report.csv"))
        if r["group"] == "overall" and r["system"] == "noisy input"
    )
    assert (
        overall["clips"] == "3" and math.isfinite(float(overall["si_sdr"])) and float(overall["si_sdr"]) > 5
    )


@pytest.mark.slow
def test_a_clean_corpus_writes_an_empty_skipped_table_and_exits_0(tmp_path, capsys):
    corpus = _corpus(tmp_path / "corpus", good=("a.wav", "b.wav"))
    out = tmp_path / "eval"
    assert evaluate.main(["--data", str(corpus), "--output-dir", str(out), *ARGS]) == 0
    assert "skipped" not in capsys.readouterr().err
    assert list(csv.DictReader(open(out / "skipped.csv"))) == []
    assert "## Skipped" not in (out / "report.md").read_text()


@pytest.mark.slow
def test_nothing_evaluable_exits_2_and_the_report_still_lists_why(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    expected = _bad_pairs(corpus)
    nan = np.full(RATE, 0.1, dtype=np.float32)
    nan[100] = np.nan
    sf.write(corpus / "noisy" / "nan.wav", nan, RATE, subtype="FLOAT")
    sf.write(corpus / "clean" / "nan.wav", _tone(RATE), RATE)
    out = tmp_path / "eval"
    assert evaluate.main(["--data", str(corpus), "--output-dir", str(out), *ARGS]) == 2
    assert f"all 5 pairs skipped (see {out / 'report.md'}#skipped)" in capsys.readouterr().err
    skipped = {r["file"]: r["reason"] for r in csv.DictReader(open(out / "skipped.csv"))}
    assert set(skipped) == {*expected, "nan.wav"}
    assert skipped["nan.wav"] == "noisy/nan.wav: contains 1 NaN/Inf sample(s)"
    assert "| nan.wav | noisy/nan.wav: contains 1 NaN/Inf sample(s) |" in (out / "report.md").read_text()
