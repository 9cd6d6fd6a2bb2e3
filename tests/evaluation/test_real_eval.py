"""The real-recordings test set: composed from a (test-made) corpus, reported per content and SNR bucket."""

import csv

import numpy as np
import pytest

from lightning_app import config as C
from lightning_app.data import corpus as K
from lightning_app.data.dsp import rms
from lightning_app.evaluation.pipeline import evaluate_real
from lightning_app.evaluation.test_sets import (
    REAL_SNR_BUCKETS,
    RealDraw,
    real_test_set,
    snr_buckets,
    with_high_shelf,
)
from tests.helpers import make_corpus

RATE = 44100


def test_real_test_set_draws_the_test_split_at_spread_snrs(tmp_path):
    root = make_corpus(tmp_path / "real")
    clips, rate = real_test_set(root, "test", clips_per_content=6, seconds=1.0)
    assert rate == RATE and len(clips) == 12
    assert {c["content"] for c in clips} == {"music", "speech"}
    for content in ("music", "speech"):
        snrs = sorted(c["snr_db"] for c in clips if c["content"] == content)
        assert [int(s // 5) for s in snrs] == list(range(6)), f"one clip per 5-dB bucket: {snrs}"
    again, _ = real_test_set(root, "test", clips_per_content=6, seconds=1.0)
    np.testing.assert_array_equal(clips[3]["noisy"], again[3]["noisy"])
    val, _ = real_test_set(root, "val", clips_per_content=6, seconds=1.0)
    assert not np.allclose(val[0]["clean"][:1000], clips[0]["clean"][:1000]), "val and test must differ"


@pytest.mark.slow
def test_real_report_counts_the_clips_a_system_made_worse(tmp_path):
    root = make_corpus(tmp_path / "real")
    rng = np.random.default_rng(0)
    systems = [
        ("identity", lambda audio, rate: audio),
        ("scrambler", lambda audio, rate: rng.permutation(audio)),
    ]  # destroys every clip
    result = evaluate_real(
        root, systems, tmp_path / "out", "archive_fullband", clips_per_content=6, seconds=1.0
    )
    rows = {(r["system"], r["group"]): r for r in result["rows"]}
    assert rows[("identity", "music")]["clips_worse_than_input"] == 0
    assert abs(rows[("identity", "speech")]["si_sdr_i"]) < 1e-3
    assert rows[("scrambler", "music")]["clips_worse_than_input"] == 6
    assert rows[("scrambler", "speech")]["worst_si_sdr_i"] < -10
    for content in ("music", "speech"):
        for low, high in REAL_SNR_BUCKETS:
            assert rows[("scrambler", f"{content}, input SNR {low:g}-{high:g} dB")]["clips"] == 1
    clean = {(r["system"], r["group"]): r for r in result["clean_input"]}
    assert (
        clean[("identity", "music")]["median_si_sdr"] > 60 and clean[("scrambler", "music")]["p10_si_sdr"] < 0
    )
    text = (tmp_path / "out" / "real.md").read_text()
    assert "clips worse than input by > 0.5 dB" in text and "speech, input SNR 25-30 dB" in text
    assert (tmp_path / "out" / "real.csv").is_file()
    # Every clip the scrambler harmed is named with its recording, worst first; none of identity's.
    listed = text.split("## Clips made worse than their input")[1].split("## ")[0]
    per_clip = list(csv.DictReader(open(tmp_path / "out" / "real_clips.csv")))
    assert len(per_clip) == 3 * 12, "one row per clip for the noisy input and each system"
    harmed = sorted(
        (float(r["si_sdr_i"]), r["clip"], r["track"]) for r in per_clip if r["system"] == "scrambler"
    )
    assert all(track for _, _, track in harmed), "each clip names the recording it was cut from"
    lines = [line for line in listed.splitlines() if line.startswith("| scrambler |")]
    assert [line.split(" | ")[1] for line in lines] == [clip for _, clip, _ in harmed]
    assert harmed[0][2] in lines[0] and "| identity |" not in listed


def test_the_real_set_can_come_from_the_val_split_and_says_it_is_not_a_test_result(tmp_path):
    root = make_corpus(tmp_path / "real")
    identity = [("identity", lambda audio, rate: audio)]
    result = evaluate_real(root, identity, tmp_path / "out", "archive_fullband", 2, 1.0, split="val")
    val, _ = real_test_set(root, "val", clips_per_content=2, seconds=1.0)
    assert result["clips"] == len(val) == 4
    heading = (tmp_path / "out" / "real.md").read_text().splitlines()[0]
    assert "val split" in heading and "not a test result" in heading, heading
    evaluate_real(root, identity, tmp_path / "test", "archive_fullband", 2, 1.0)
    heading = (tmp_path / "test" / "real.md").read_text().splitlines()[0]
    assert "test split" in heading and "not a test result" not in heading, heading


def _band_rms(x, low, high):
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1.0 / RATE)
    return np.sqrt(np.sum(np.abs(spectrum[(freqs >= low) & (freqs < high)]) ** 2))


def test_brighter_copies_keep_the_noise_and_snr_and_are_reported_as_groups_of_their_own(tmp_path):
    root = make_corpus(tmp_path / "real")
    clips, _ = real_test_set(root, "test", clips_per_content=2, seconds=1.0)
    music = [c for c in clips if c["content"] == "music"]
    for clip, bright in zip(music, with_high_shelf(music, RATE, 12.0), strict=True):
        lift_db = 20 * np.log10(
            _band_rms(bright["clean"], 15000, 20000) / _band_rms(clip["clean"], 15000, 20000)
        )
        bass_db = 20 * np.log10(_band_rms(bright["clean"], 50, 500) / _band_rms(clip["clean"], 50, 500))
        assert 10.0 < lift_db < 12.1 and abs(bass_db) < 0.2, (lift_db, bass_db)
        snr = 20 * np.log10(rms(clip["clean"]) / rms(clip["noisy"] - clip["clean"]))
        bright_snr = 20 * np.log10(rms(bright["clean"]) / rms(bright["noisy"] - bright["clean"]))
        assert abs(snr - bright_snr) < 1e-6 and bright["shelf_db"] == 12.0
    identity = [("identity", lambda audio, rate: audio)]
    result = evaluate_real(
        root, identity, tmp_path / "out", "archive_fullband", 2, 1.0, shelves_db=(6.0, -6.0)
    )
    rows = {(r["system"], r["group"]): r for r in result["rows"]}
    for gain in ("+6", "-6"):
        row = rows[("identity", f"music through a high shelf of {gain} dB above 5 kHz")]
        assert row["clips"] == len(music) and abs(row["si_sdr_i"]) < 1e-3
    assert rows[("identity", "music")]["clips"] == len(music), "the copies are not counted with the music"
    assert result["clips"] == len(clips)
    assert "music through a high shelf of +6 dB" in (tmp_path / "out" / "real.md").read_text()


def test_without_a_corpus_the_real_set_says_how_to_build_it(tmp_path):
    with pytest.raises(K.CorpusError, match="make corpus"):
        real_test_set(tmp_path / "nothing", "test")


def test_real_contents_train_on_train_validate_on_val_and_are_labelled(tmp_path):
    from conftest import smoke_config

    from lightning_app.training.run import build_datamodule, build_system

    root = make_corpus(tmp_path / "real", seconds=2.0)
    cfg = smoke_config(
        tmp_path,
        "data.clean.mix={speech: 0.5, real_music: 0.5}",
        f"data.clean.real_music.corpus={root}",
        "data.val_clips=4",
    )
    dm = build_datamodule(cfg, build_system(cfg))
    dm.prepare_data()
    dm.setup("fit")
    val = [dm.val_set[i] for i in range(4)]
    assert sorted(v["content"] for v in val) == ["real_music", "real_music", "speech", "speech"]
    folders = {split: dm._clean_source(split).sources["real_music"].path for split in ("train", "val")}
    assert folders == {"train": str(root / "train" / "music"), "val": str(root / "val" / "music")}
    assert dm.val_set.clean_source.sources["real_music"].path == folders["val"]
    assert dm.train_set.clean_source.sources["real_music"].path == folders["train"]


def test_a_real_content_without_a_corpus_is_one_line(tmp_path):
    from conftest import smoke_config

    from lightning_app.training.run import build_datamodule, build_system

    cfg = smoke_config(
        tmp_path,
        "data.clean.mix={speech: 0.5, real_music: 0.5}",
        f"data.clean.real_music.corpus={tmp_path / 'none'}",
    )
    with pytest.raises(C.ConfigError, match=r"data.clean.real_music: .* build it with: make corpus"):
        build_datamodule(cfg, build_system(cfg))


def test_the_real_set_scored_in_batches_reports_what_one_batch_does(tmp_path, monkeypatch):
    """Its clips are scored a batch at a time, so that hundreds of clips fit in memory; a clip's scores do not
    depend on the batch it is in."""
    from lightning_app.evaluation import pipeline

    root = make_corpus(tmp_path / "real")
    halves = [("halves", lambda audio, rate: 0.5 * audio + 0.01 * np.roll(audio, 7))]
    monkeypatch.setattr(pipeline, "REAL_SCORE_BATCH", 1000)
    whole = evaluate_real(root, halves, tmp_path / "whole", "archive_fullband", 6, 1.0)["rows"]
    monkeypatch.setattr(pipeline, "REAL_SCORE_BATCH", 5)  # 24 clips: batches of 5, 5, 5, 5 and 4
    batched = evaluate_real(root, halves, tmp_path / "batched", "archive_fullband", 6, 1.0)["rows"]
    assert len(batched) == len(whole) > 2
    for one, other in zip(whole, batched, strict=True):
        assert (one["system"], one["group"], one["clips"]) == (
            other["system"],
            other["group"],
            other["clips"],
        )
        numbers = [k for k, v in one.items() if isinstance(v, float)]
        assert {k: other[k] for k in numbers} == pytest.approx(
            {k: one[k] for k in numbers}, rel=1e-9, abs=1e-12
        )


def test_a_harder_draw_keeps_the_clips_under_the_noise_asked_for_and_at_the_snrs_asked_for(tmp_path):
    root = make_corpus(tmp_path / "real")
    every, _ = real_test_set(root, "val", 12, 1.0, draw=RealDraw(snr_db=(10.0, 25.0), seed=777))
    low, _ = real_test_set(
        root, "val", 12, 1.0, draw=RealDraw(snr_db=(10.0, 25.0), seed=777, noise_types=("brown", "rumble"))
    )
    expected = [c for c in every if {"brown", "rumble"} & set(c["noise_types"])]
    assert 0 < len(low) < len(every), "the draw should hold clips with and without low-frequency noise"
    assert [c["name"] for c in low] == [c["name"] for c in expected]
    for kept, same in zip(low, expected, strict=True):  # a kept clip is the same clip as in the whole draw
        np.testing.assert_array_equal(kept["noisy"], same["noisy"])
    assert all(10.0 <= c["snr_db"] < 25.0 for c in every)
    other_seed, _ = real_test_set(root, "val", 12, 1.0, draw=RealDraw(snr_db=(10.0, 25.0), seed=778))
    assert not np.allclose(other_seed[0]["noisy"], every[0]["noisy"]), "another seed must draw other clips"
    with pytest.raises(ValueError, match="no noise generator named rumbel.*it draws .*rumble"):
        real_test_set(root, "val", 2, 1.0, draw=RealDraw(noise_types=("rumbel",)))
    with pytest.raises(ValueError, match="must rise"):
        RealDraw(snr_db=(25.0, 10.0))


def test_a_harder_draw_is_for_the_val_split_and_its_report_says_how_it_was_drawn(tmp_path):
    root = make_corpus(tmp_path / "real")
    identity = [("identity", lambda audio, rate: audio)]
    draw = RealDraw(snr_db=(10.0, 25.0), seed=777, noise_types=("brown", "rumble"))
    with pytest.raises(ValueError, match="val split only"):
        evaluate_real(root, identity, tmp_path / "test", "archive_fullband", 12, 1.0, draw=draw)
    evaluate_real(root, identity, tmp_path / "val", "archive_fullband", 12, 1.0, split="val", draw=draw)
    text = (tmp_path / "val" / "real.md").read_text()
    assert (
        "input SNRs spread over 10-25 dB, seed 777, only the clips whose noise holds brown or rumble" in text
    )
    rows = list(csv.DictReader(open(tmp_path / "val" / "real_clips.csv")))
    assert rows and all({"brown", "rumble"} & set(r["noise"].split("+")) for r in rows)
    assert all(10.0 <= float(r["snr_db"]) < 25.0 for r in rows), "the draw's SNRs must reach the set"


@pytest.mark.parametrize(
    "args, says",
    [
        (["--real-noise", "brown"], "add --real-split val"),
        (["--real-split", "val", "--real-seed", "7", "--no-real"], "draws no real set"),
        (["--real-split", "val", "--real-noise", "rumbel"], "no noise generator named rumbel"),
        (["--real-split", "val", "--real-snr-db", "20", "10"], "must rise"),
    ],
)
def test_the_command_line_refuses_a_harder_draw_it_cannot_make_before_running_anything(
    tmp_path, capsys, args, says
):
    from lightning_app import evaluate

    out = tmp_path / "out"
    status = evaluate.main(
        [*args, "--experiment", "archive_fullband", "--output-dir", str(out), "--no-baselines"]
    )
    assert status == 2
    assert says in capsys.readouterr().err
    assert not out.exists(), "nothing should run or be written"


def test_the_snr_buckets_cover_any_range_a_draw_asks_for():
    assert REAL_SNR_BUCKETS == tuple((float(b), float(b + 5)) for b in range(0, 30, 5))
    assert snr_buckets((25.0, 40.0)) == ((25.0, 30.0), (30.0, 35.0), (35.0, 40.0))
    assert snr_buckets((-3.0, 7.0)) == ((-5.0, 0.0), (0.0, 5.0), (5.0, 10.0))
