"""The corpus of real recordings: built from (tiny, test-made) Debian packages, split by source."""

import csv
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lightning_app.data import corpus as K

RATE = 22050


def _make_deb(root: Path, name: str, files: dict[str, np.ndarray], rate: int = RATE) -> Path:
    """A real .deb (dpkg-deb --build) holding ``files`` (relative path -> mono audio) and a copyright file."""
    tree = root / f"{name}-tree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: tests <t@example.org>\nDescription: test audio\n"
    )
    doc = tree / "usr/share/doc" / name
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("Files: *\nLicense: CC0-1.0\n")
    for rel, audio in files.items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, audio, rate)
    deb = root / "debs" / f"{name}_1.0_all.deb"
    deb.parent.mkdir(exist_ok=True)
    subprocess.run(
        ["dpkg-deb", "--build", "--root-owner-group", str(tree), str(deb)], check=True, capture_output=True
    )
    return deb


def _tone(seconds: float, f0: float, rng) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * f0 * t) * (1 + 0.1 * rng.standard_normal(len(t)))).astype(np.float32)


def _spec(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "corpus.yaml"
    path.write_text(f"""reserved: ["wesnoth*", "fillets-ng-data*", "alsa-utils"]
sample_rate: 16000
splits: {{train: 0.5, val: 0.25, test: 0.25}}
min_seconds: 0.2
speech_file_seconds: 2.0
packages:
  test-music:
    content: music
    licence: CC0-1.0
    files: ["usr/share/test-music/*.ogg"]
    group: "([^/]+)$"
  test-voices:
    content: speech
    licence: GPL-2+
    files: ["usr/share/voices/*/*.wav"]
    group: "voices/([a-z]+)/"
{extra}""")
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb (Debian's dpkg) is needed to build and unpack test packages")
    tmp = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    _make_deb(
        tmp,
        "test-music",
        {f"usr/share/test-music/track{i}.ogg": _tone(1.5, 220 + 40 * i, rng) for i in range(8)},
    )
    voices = {
        f"usr/share/voices/{who}/w{j}.wav": _tone(0.6, 120 + 10 * j, rng)
        for who in ("ann", "bob", "cy", "dee", "eve", "fay")
        for j in range(4)
    }
    voices["usr/share/voices/ann/silent.wav"] = np.zeros(RATE, dtype=np.float32)  # left out: digital silence
    _make_deb(tmp, "test-voices", voices)
    rows = K.build_corpus(K.load_spec(_spec(tmp)), tmp / "real", tmp / "debs")
    return tmp / "real", rows


def test_manifest_lists_every_file_with_its_licence_and_rate(built):
    root, rows = built
    with open(root / K.MANIFEST, newline="") as f:
        manifest = list(csv.DictReader(f))
    assert manifest == [{k: str(v) for k, v in r.items()} for r in rows]
    assert {r["package"] for r in manifest} == {"test-music", "test-voices"}
    for row in manifest:
        assert row["licence"], row
        info = sf.info(root / row["file"])
        assert info.samplerate == int(row["sample_rate"]) == 16000 and info.channels == 1
        assert abs(info.duration - float(row["seconds"])) < 0.01
        assert row["file"].startswith(f"{row['split']}/{row['content']}/{row['package']}/")
    assert (root / "licences" / "test-music.copyright").is_file()
    music = [r for r in manifest if r["content"] == "music"]
    assert len(music) == 8, "one file per track"
    speech = [r for r in manifest if r["content"] == "speech"]
    assert len({r["group"] for r in speech}) == 6, "one group per speaker"


def test_no_track_or_speaker_is_in_two_splits_and_every_split_is_used(built):
    _, rows = built
    assert K.leaks(rows) == {}
    for content in ("music", "speech"):
        assert {r["split"] for r in rows if r["content"] == content} == set(K.SPLITS), content
    assert K.leaks([*rows, dict(rows[0], split="test" if rows[0]["split"] != "test" else "train")]), (
        "a group in two splits must be found"
    )


def test_short_speech_items_of_one_speaker_are_joined_and_silence_is_left_out(built):
    root, rows = built
    ann = [r for r in rows if r["group"] == "test-voices:ann"]
    assert len(ann) == 2 and all(r["sources"] == "4 items" for r in ann), (
        ann
    )  # 4 spoken items, not the silent file
    audio, _ = sf.read(root / ann[0]["file"])
    assert float(ann[0]["seconds"]) > 1.5 and np.mean(np.abs(audio) < 1e-4) > 0.05, "pauses between the items"


def test_assign_splits_is_balanced_by_duration_and_pure():
    durations = {f"g{i}": float(1 + i % 5) for i in range(40)}
    splits = K.assign_splits(durations, {"train": 0.7, "val": 0.15, "test": 0.15})
    assert splits == K.assign_splits(
        dict(reversed(durations.items())), {"train": 0.7, "val": 0.15, "test": 0.15}
    )
    total = sum(durations.values())
    share = {s: sum(d for g, d in durations.items() if splits[g] == s) / total for s in K.SPLITS}
    assert abs(share["train"] - 0.7) < 0.06 and abs(share["test"] - 0.15) < 0.06, share


def test_reserved_packages_are_refused(tmp_path):
    bad = _spec(
        tmp_path, "  wesnoth-1.16-music:\n    content: music\n    licence: GPL-2+\n    files: ['*.ogg']\n"
    )
    with pytest.raises(K.CorpusError, match="reserved for independent evaluation"):
        K.load_spec(bad)
    for name in ("fillets-ng-data-cs", "alsa-utils"):
        with pytest.raises(K.CorpusError, match="reserved"):
            K.load_spec(_spec(tmp_path), only=[name])
    with pytest.raises(K.CorpusError, match="has no package nope"):
        K.load_spec(_spec(tmp_path), only=["nope"])


def test_the_project_spec_names_a_licence_and_content_for_every_package():
    spec = K.load_spec()
    assert {p.content for p in spec.packages} == {"music", "speech"}
    assert all(p.licence for p in spec.packages)
    assert not any(
        p.name.startswith(("wesnoth", "fillets-ng")) or p.name == "alsa-utils" for p in spec.packages
    )


def test_a_package_that_cannot_be_had_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(K.shutil, "which", lambda name: None)
    with pytest.raises(K.CorpusError) as info:
        K.fetch_package("test-music", tmp_path)
    assert "no test-music_*.deb in" in str(info.value) and "\n" not in str(info.value)


def test_a_missing_corpus_names_the_command_that_builds_it(tmp_path):
    with pytest.raises(K.CorpusError, match="build it with: make corpus"):
        K.read_manifest(tmp_path / "real")


def test_a_failed_build_leaves_no_corpus_behind(tmp_path):
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is needed")
    _make_deb(
        tmp_path, "test-music", {"usr/share/elsewhere/a.ogg": _tone(1.0, 300, np.random.default_rng(1))}
    )
    with pytest.raises(K.CorpusError, match="no file matches"):
        K.build_corpus(
            K.load_spec(_spec(tmp_path), only=["test-music"]), tmp_path / "real", tmp_path / "debs"
        )
    assert not (tmp_path / "real").exists()
    assert not list(tmp_path.glob(".real-*"))
