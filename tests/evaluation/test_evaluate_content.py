"""evaluate on unlabelled clips says which content it scored them as, and PESQ only scores speech: tone clips
are guessed music (no PESQ column), --content speech sets them, and PESQ failures are counted, not shouted.
"""

import csv
import logging
import math

import numpy as np
import pytest
import soundfile as sf

from lightning_app import evaluate
from lightning_app.evaluation import reports, scoring

RATE = 16000
ARGS = ["--no-baselines", "--workers", "1", "--visqol-clips", "0"]


def tone_corpus(root, clips=4):
    """The newcomer's DATA folder: tone clips in noisy/ + clean/, in no speech/ or music/ folder."""
    rng = np.random.default_rng(0)
    t = np.arange(RATE) / RATE
    for i in range(clips):
        clean = 0.2 * np.sin(2 * np.pi * (220 + 110 * i) * t)
        for side, audio in (("clean", clean), ("noisy", clean + 0.03 * rng.standard_normal(RATE))):
            (root / side).mkdir(parents=True, exist_ok=True)
            sf.write(root / side / f"tone{i}.wav", audio, RATE)
    return root


def overall_header(report: str) -> str:
    return next(line for line in report.split("## Overall")[1].splitlines() if line.startswith("| system"))


def test_tone_clips_are_guessed_music_said_so_and_get_no_pesq_column(tmp_path, capsys):
    out = tmp_path / "eval"
    assert (
        evaluate.main(["--data", str(tone_corpus(tmp_path / "data")), "--output-dir", str(out), *ARGS]) == 0
    )
    report = (out / "report.md").read_text()
    said = (
        "Content: music (guessed from the clean files: 4 of 4 unlabelled file(s) look like music; "
        "pass --content speech|music to set it)."
    )
    assert report.splitlines()[2] == said  # right under the title
    assert said in capsys.readouterr().out  # and on the console
    header = overall_header(report)
    assert "pesq" not in header and "stoi" not in header and "speech_removed" not in header
    assert "removed-vs-clean corr" in header
    assert "## PESQ by" not in report and not (out / "pesq_vs_input_snr.png").exists()
    assert "none of the 4 clips is speech" in report
    assert "## Content guesses" in report and "| tone0.wav | music | spectral stability" in report
    rows = list(csv.DictReader(open(out / "report.csv")))
    assert {r["group"] for r in rows} >= {"overall", "content: music"}
    assert all(r["pesq_clips"] == "0" and math.isnan(float(r["pesq"])) for r in rows)


def test_content_speech_scores_pesq_and_counts_its_failures_in_one_line(tmp_path, monkeypatch, caplog):
    def pesq_fails_on_three(jobs, workers):  # PESQ finds an utterance in the first clip of each system only
        assert all(job[3] for job in jobs), "--content speech: every clip is asked for PESQ"
        return [
            {
                "pesq": 2.5 if i % 4 == 0 else math.nan,
                "pesq_error": None if i % 4 == 0 else "NoUtterancesError: b'No utterances detected'",
                "stoi": 0.9,
                "stoi_error": None,
                "visqol": math.nan,
                "visqol_error": None,
            }
            for i, _ in enumerate(jobs)
        ]

    monkeypatch.setattr(scoring, "perceptual_scores", pesq_fails_on_three)
    out = tmp_path / "eval"
    corpus = tone_corpus(tmp_path / "data")
    with caplog.at_level(logging.INFO):
        code = evaluate.main(["--data", str(corpus), "--content", "speech", "--output-dir", str(out), *ARGS])
    assert code == 0
    report = (out / "report.md").read_text()
    assert "Content: speech (set by --content speech) for 4 unlabelled file(s)." in report
    assert "PESQ: 1 of 4 clips scored; 3 failed (NoUtterancesError: b'No utterances detected' ×3)" in report
    assert "pesq (MOS 1–4.5) [n=1 of 4]" in overall_header(report)  # the mean says how few clips it holds
    assert "| stoi (0–1) |" in overall_header(report)  # STOI scored every clip: no n
    failures = [r for r in caplog.records if "PESQ" in r.getMessage() and r.levelno >= logging.WARNING]
    assert len(failures) == 1 and "PESQ failed on 3 of 4 clips" in failures[0].getMessage()
    overall = next(r for r in csv.DictReader(open(out / "report.csv")) if r["group"] == "overall")
    assert overall["pesq_clips"] == "1" and float(overall["pesq"]) == 2.5 and overall["stoi_clips"] == "4"


def test_a_louder_output_is_flagged_and_the_muting_alarm_kept(tmp_path):
    def row(system, retention, group="overall"):
        return {"group": group, "system": system, "clips": 4, "amplitude_retention": retention}

    rows = [
        row("noisy input", 1.0),
        row("loud model", 3.85),
        row("quiet model", 0.12),
        row("loud model", 3.9, "content: music"),
        row("loud model", 3.8, "content: speech"),
    ]
    report = reports.write_reports(rows, tmp_path, "test", [], columns=("amplitude_retention",))
    check = report.split("## Level check")[1].split("\n## ")[0]
    assert "- loud model: **LOUDER than the reference (x3.85)**" in check
    assert "- quiet model: **MUTING (x0.12 of the reference level)**" in check
    assert "- loud model (music): **LOUDER than the reference (x3.90)**" in check
    assert "noisy input" not in check  # the input is what the systems are given: not judged
    assert "| noisy input | 4.000 |" in reports.write_reports(
        [row("noisy input", 4.0)], tmp_path, "t", [], columns=("amplitude_retention",)
    )
    assert "| loud model | 3.850 (LOUDER) |" in report and "| quiet model | 0.120 (MUTING) |" in report
    assert "Every system keeps the level." in reports.level_check([row("a", 0.97), row("b", 1.08)])


@pytest.mark.parametrize("counts, expected", [((1, 1), "[n=1 of 4]"), ((1, 4), "2.500 (n=1)")])
def test_a_mean_over_fewer_clips_than_its_row_says_its_n(counts, expected):
    rows = [
        {"system": s, "clips": 4, "pesq": 2.5, "pesq_clips": n, "pesq_i": 0.0, "pesq_i_clips": n}
        for s, n in zip("ab", counts, strict=True)
    ]
    text = "\n".join(reports.markdown_table(rows, ("pesq", "pesq_i")))
    assert expected in text
    assert "(n=4)" not in text  # a full count says nothing


def test_a_folder_without_references_says_which_files_are_labelled_and_how():
    from lightning_app.evaluation.listening_report import ReportEntry
    from lightning_app.evaluation.pipeline import folder_content_note

    entries = [
        ReportEntry("music/a.wav", "o/a.wav", None, "music", content_source="its music/ folder"),
        ReportEntry("b.wav", "o/b.wav", None, "speech", content_source="--content speech"),
        ReportEntry("c.wav", "o/c.wav"),
    ]
    note = folder_content_note(entries, "auto")
    assert note.startswith("Content: music 1 (their folder), speech 1 (--content speech), not labelled 1 (")
    assert "DNSMOS, a speech measure, not shown for them" in note and "--content speech|music" in note
