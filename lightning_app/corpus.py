"""Assemble the corpus of real recordings (free music and voices from Debian packages) into data/real/.

    python -m lightning_app.corpus [--root data/real] [--packages-dir DIR] [--spec configs/corpus.yaml]
                                   [--only PKG ...]

Each package of the spec (configs/corpus.yaml: content, licence, file patterns, how files group into
tracks or speakers) is downloaded with `apt-get download` into --packages-dir (default: beside --root;
a .deb already there is used as it is, so a second build needs no network), unpacked, and its
recordings written as 44.1 kHz mono FLAC into ROOT/<train|val|test>/<speech|music>/<package>/.
ROOT/manifest.csv lists every file (file, split, content, package, licence, group, seconds, sample
rate, sources) and ROOT/licences/ holds each package's copyright file. Splits are by group (a track,
a speaker), never by file. ROOT is replaced only when the whole build succeeded.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path

from lightning_app.data.corpus import DEFAULT_ROOT, DEFAULT_SPEC, CorpusError, build_corpus, load_spec


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m lightning_app.corpus",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--root", type=Path, default=DEFAULT_ROOT, help="where the corpus goes (default data/real)"
    )
    p.add_argument(
        "--packages-dir",
        type=Path,
        default=None,
        help="where the .deb files are kept (default: ROOT's parent/packages)",
    )
    p.add_argument(
        "--spec", type=Path, default=DEFAULT_SPEC, help="the corpus description (configs/corpus.yaml)"
    )
    p.add_argument(
        "--only", nargs="+", default=None, metavar="PACKAGE", help="build from these packages of the spec"
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    try:
        rows = build_corpus(load_spec(args.spec, args.only), args.root, args.packages_dir)
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    hours = Counter()
    for row in rows:
        hours[(row["split"], row["content"])] += float(row["seconds"]) / 3600
    print(
        f"corpus: {args.root / 'manifest.csv'}: {len(rows)} files from "
        f"{len({r['package'] for r in rows})} packages"
    )
    for (split, content), h in sorted(hours.items()):
        groups = len({r["group"] for r in rows if r["split"] == split and r["content"] == content})
        print(f"  {split:5s} {content:6s} {h:6.2f} h in {groups} groups (tracks or speakers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
