"""The archive model that ships in models/: it loads safely, restores without --checkpoint, and its
card's spot-check numbers are what it really does."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from lightning_app import denoise
from lightning_app.evaluation.scoring import spot_check
from lightning_app.restoring.networks import BUNDLED_MODEL
from lightning_app.systems.checkpoints import load_system
from tests.helpers import write_tone_file

CARD = BUNDLED_MODEL.with_suffix(".json")


def test_the_bundled_model_is_small_and_loads_with_weights_only():
    assert BUNDLED_MODEL.is_file(), "models/archive_fullband.ckpt is missing"
    assert BUNDLED_MODEL.stat().st_size <= 25 * 2**20, "the bundled model must stay small enough for git"
    ckpt = torch.load(BUNDLED_MODEL, map_location="cpu", weights_only=True)
    assert ckpt["system_kind"] == "supervised" and ckpt["hyper_parameters"]["sample_rate"] == 44100
    assert "optimizer_states" not in ckpt, "an inference checkpoint carries no optimizer state"
    system = load_system(BUNDLED_MODEL)
    assert not system.training


@pytest.mark.slow
def test_the_cards_spot_check_matches_a_re_evaluation():
    card = json.loads(CARD.read_text())
    check = card["spot_check"]
    measured = spot_check(
        BUNDLED_MODEL,
        clips=int(check["clips"]),
        seconds=float(check["seconds"]),
        experiment=check["experiment"],
    )
    # Tolerance: the same clips and weights; only float summation order differs between CPUs.
    for key, value in check["results"].items():
        tolerance = 0.1 if key.startswith("si_sdr") else 0.01
        assert measured[key] == pytest.approx(value, abs=tolerance), key


@pytest.mark.slow
def test_denoise_without_a_checkpoint_uses_the_bundled_model_and_says_so(tmp_path, caplog):
    src = tmp_path / "take.wav"
    write_tone_file(src, 1.0, 44100, channels=2)
    with caplog.at_level(logging.INFO, logger="lightning_app"):
        assert denoise.main([str(src), "-o", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "the bundled archive model" in caplog.text
    assert (tmp_path / "out" / "take.wav").is_file()
