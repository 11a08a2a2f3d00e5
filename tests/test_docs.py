"""The front door and the pages behind it: every relative link in README.md and docs/ resolves, and
every `zoo ...` command they show parses with the real `zoo` parser."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from zoo.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"```[a-z]*\n(.*?)```", re.S)
INLINE = re.compile(r"`(zoo [^`]+)`")


def _links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())  # links inside code are code
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def _commands(page: Path) -> list[str]:
    text = page.read_text()
    found = []
    for block in FENCE.findall(text):
        for line in block.splitlines():
            line = re.sub(r"^\$ ", "", line.strip())
            line = re.sub(r"^python -m zoo ", "zoo ", line)
            if line.startswith("zoo "):
                found.append(line)
    # Inline spans that are whole commands (`zoo eval resnet18`), not the bare name of one (`zoo serve`).
    found += [c for c in INLINE.findall(FENCE.sub("", text)) if len(c.split()) > 2]
    return found


def _words(command: str) -> list[str]:
    words = shlex.split(command, comments=True)[1:]
    # A placeholder alternative (`--precision bf16-mixed|32-true`) stands for each of its values.
    return [w.split("|")[0] if w.startswith(("bf16", "32-")) else w for w in words]


def test_the_front_door_is_short_and_its_pages_exist():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300
    for name in ("training", "weights", "finetuning", "scenes", "deploying", "performance", "guarantees", "reproducing"):
        assert (ROOT / "docs" / f"{name}.md").is_file(), name
    assert len(list((ROOT / "docs" / "studies").glob("*.md"))) >= 5


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    links = _links(page)
    missing = [link for link in links if not (page.parent / link.split("#")[0]).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_every_zoo_command_in_the_docs_parses():
    parser = build_parser()
    commands = [(page, c) for page in PAGES for c in _commands(page)]
    assert len(commands) > 40  # the finder sees the pages' commands
    bad = []
    for page, command in commands:
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                parser.parse_args(_words(command))
        except SystemExit:
            bad.append(f"{page.relative_to(ROOT)}: {command}\n    {err.getvalue().strip().splitlines()[-1]}")
    assert not bad, "\n".join(bad)


def test_the_checker_catches_a_broken_link_and_a_wrong_flag(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[there](nowhere.md) and [web](https://d2l.ai)\n\n```bash\nzoo train lenet --no-such-flag\n```\n")
    assert _links(page) == ["nowhere.md"] and not (tmp_path / "nowhere.md").exists()
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit):
        build_parser().parse_args(_words(_commands(page)[0]))
