"""The README stays short and its links and pictures exist; the documentation site builds strictly."""

import os
import re
import subprocess
import sys

from lightning_app.config import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"


def _links(markdown: str) -> list[str]:
    return [target for target in re.findall(r"\]\(([^)\s]+)\)", markdown) if "://" not in target]


def test_the_readme_is_short_and_everything_it_links_or_shows_exists():
    text = README.read_text()
    assert len(text.splitlines()) <= 250, (
        f"README.md has {len(text.splitlines())} lines; the rest goes in docs/"
    )
    targets = _links(text)
    assert any(t.endswith(".png") for t in targets), "the README shows no picture"
    missing = [t for t in targets if not (PROJECT_ROOT / t.split("#")[0]).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_every_docs_page_is_in_the_site_navigation():
    nav = (PROJECT_ROOT / "mkdocs.yml").read_text()
    pages = {p.name for p in (PROJECT_ROOT / "docs").glob("*.md")}
    listed = set(re.findall(r":\s*([\w-]+\.md)\s*$", nav, flags=re.M))
    assert pages == listed, f"pages not in mkdocs.yml's nav: {sorted(pages - listed)}; gone: {listed - pages}"


def test_the_site_builds_strictly(tmp_path):
    """mkdocs --strict fails on a broken link, a missing anchor, a missing snippet or an unlisted page."""
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    home = (tmp_path / "site" / "index.html").read_text()
    assert "images/restored_excerpts.png" in home
    card = (tmp_path / "site" / "model-card.html").read_text()
    assert "How it was trained" in card, "the model card snippet was not included"
    # A list written straight under a paragraph line (no blank line between) renders as one run-on paragraph.
    run_on = [
        f"{page.name}: {paragraph.strip()[:70]!r}"
        for page in (tmp_path / "site").glob("*.html")
        for paragraph in re.findall(r"<p>(.*?)</p>", page.read_text(), flags=re.S)
        if re.search(r"\n(?:- |\d+\. )", paragraph)
    ]
    assert not run_on, f"lists rendered as text (put a blank line before them): {run_on}"
