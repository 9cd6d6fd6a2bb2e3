"""The pictures of the README and the documentation site, made by the suite (``make docs-figures``).

    python scripts/docs_figures.py [--model CKPT] [--evaluation DIR ...] [--corpus DIR] [--out docs/images]

--evaluation names folders written by ``make evaluate`` (report.csv, and real.csv when the corpus was
there); a system scored in several is drawn from the last (e.g. one run with the baselines, then one of the
model alone with --no-baselines). Without it the gains chart is left as it is.
"""

import argparse
import sys
from pathlib import Path

from lightning_app.evaluation import figures
from lightning_app.restoring.networks import BUNDLED_MODEL


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=BUNDLED_MODEL, help="checkpoint or export to restore with")
    p.add_argument(
        "--evaluation",
        type=Path,
        nargs="+",
        help="evaluate output folders (report.csv, real.csv); a system in several is taken from the last",
    )
    p.add_argument("--corpus", type=Path, default=Path("data/real"), help="the real corpus (make corpus)")
    p.add_argument("--out", type=Path, default=Path("docs/images"))
    args = p.parse_args(argv)
    print(figures.restored_excerpts(args.model, args.out / "restored_excerpts.png", args.corpus))
    if args.evaluation is not None:
        print(figures.gains_chart(args.evaluation, args.out / "gains_by_content.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
