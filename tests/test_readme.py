"""The README is a front door, and every command it shows works.

(a) README.md stays short (at most 250 lines), and the links of README.md, docs/guide.md and the
    experiment logs resolve (files, folders and #anchors in this repository).
(b) Every `lmforge ...` command in a fenced code block of README.md and docs/guide.md parses with
    the real argument parser (nothing runs), and every command of the README's commands table
    names a real command and only options it has: options that drift away from the docs fail here.
(c) (slow) The README's walk-through runs for real on one tiny run.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from lmforge.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
GUIDE = ROOT / "docs" / "guide.md"
LINKED_DOCS = [README, GUIDE, *sorted((ROOT / "docs" / "experiments").glob("*.md"))]
MAX_LINES = 250


def fenced_lines(path: Path) -> list[str]:
    """The lines inside the fenced code blocks of a markdown file (a trailing backslash joins)."""
    out, inside, pending = [], False, ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
            continue
        if not inside:
            continue
        line = pending + line
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        out.append(line)
    return out


def lmforge_commands(path: Path) -> list[list[str]]:
    """The argv (without 'lmforge') of every lmforge command in the file's code blocks: a line
    starting with `lmforge ` (after an optional `$ `), or the lmforge part of an `&&` chain; a
    trailing `# comment` is dropped."""
    commands = []
    for line in fenced_lines(path):
        text = line.strip().removeprefix("$ ")
        if "lmforge " not in text or not (text.startswith("lmforge ") or "&&" in text):
            continue
        words = shlex.split(text, comments=True)
        segment: list[str] = []
        for word in [*words, "&&"]:
            if word == "&&":
                if segment and segment[0] == "lmforge":
                    commands.append(segment[1:])
                segment = []
            else:
                segment.append(word)
    return commands


# --------------------------------------------------------------------------- (a)


def test_readme_is_a_front_door_of_at_most_250_lines():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines; move detail to docs/guide.md (at most {MAX_LINES})"


def test_readme_keeps_the_two_commands_and_the_results_markers():
    text = README.read_text(encoding="utf-8")
    assert "pip install torch==2.13.0 -e . && lmforge run --out runs/run\n" in text
    assert 'pip install torch==2.13.0 -e ".[dev]" && pytest\n' in text  # what CI runs
    lines = text.splitlines()
    start, end = lines.index("<!-- results -->"), lines.index("<!-- /results -->")
    assert start < end and "## Current results" in lines[:start]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors, seen, inside = set(), {}, False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
        elif not inside and (m := re.match(r"#{1,6} (.+)", line)):
            slug = _slug(m.group(1))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _links(path: Path) -> list[str]:
    """Link targets outside code: [text](target) and ![alt](target)."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("path", LINKED_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_in_the_repository_resolves(path):
    broken = []
    for target in _links(path):
        if re.match(r"[a-z]+:", target):  # https:, mailto:: not checked offline
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists() or (anchor and dest.suffix == ".md" and anchor not in _anchors(dest)):
            broken.append(target)
    assert not broken, f"{path.relative_to(ROOT)}: links that do not resolve: {broken}"


# --------------------------------------------------------------------------- (b)


@pytest.mark.parametrize("path", [README, GUIDE], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_in_the_code_blocks_parses(path):
    commands = lmforge_commands(path)
    assert commands, f"no lmforge command found in {path.name}"
    parser = build_parser()
    for argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{path.name}: `lmforge {shlex.join(argv)}` does not parse")


def _table_commands(path: Path) -> list[str]:
    """The command synopses of the README's commands table: `lmforge X ...` in a table row, and
    the `/ sub ...` alternatives beside it, completed with the command's first word."""
    synopses = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            continue
        spans = re.findall(r"`([^`]+)`", line.split(" | ")[1] if " | " in line else "")
        first = None
        for span in spans:
            span = span.replace("\\|", "|")
            if span.startswith("lmforge "):
                first = span.split()[1]
                synopses.append(span)
            elif first and span.split()[0].isalpha():  # `stats ...` beside `lmforge tokenizer encode ...`
                synopses.append(f"lmforge {span}" if span.split()[0] == first else f"lmforge {first} {span}")
    return synopses


def _subparsers(parser):
    return next((a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"), None)


def test_the_commands_table_names_real_commands_and_options():
    synopses = _table_commands(README)
    assert len(synopses) > 25, synopses
    for synopsis in synopses:
        words = synopsis.split()[1:]
        parser, path = build_parser(), []
        while words and (sub := _subparsers(parser)) and words[0] in sub.choices:
            parser = sub.choices[words[0]]
            path.append(words.pop(0))
        assert path, f"README: no such command: {synopsis}"
        options = {o for a in parser._actions for o in a.option_strings}
        unknown = [o for o in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", synopsis) if o not in options]
        assert not unknown, f"README: `lmforge {' '.join(path)}` has no option {unknown} ({synopsis})"


# --------------------------------------------------------------------------- (c)

# `lmforge chat` waits for a person at the terminal, and `lmforge serve` / `label serve` start
# servers that run until stopped: the walk-through's other commands run, these are only parsed (b).
INTERACTIVE = (["chat"], ["serve"], ["label", "serve"])


def walkthrough(run_dir: Path, out_dir: Path) -> list[list[str]]:
    """The README's commands that read runs/run/..., pointed at run_dir, their --out into out_dir."""
    commands = []
    for argv in lmforge_commands(README):
        if not any("runs/run/" in word for word in argv):
            continue
        if any(argv[: len(c)] == c for c in INTERACTIVE):
            continue
        argv = [word.replace("runs/run", str(run_dir)) for word in argv]
        for i, word in enumerate(argv[:-1]):
            if word == "--out":
                argv[i + 1] = str(out_dir / argv[i + 1].replace("/", "_"))
        commands.append(argv)
    return commands


def test_the_walkthrough_commands_are_found():
    commands = walkthrough(Path("RUN"), Path("OUT"))
    assert len(commands) >= 4 and all(any("RUN/" in w for w in argv) for argv in commands)
    assert not any(argv[0] == "chat" for argv in commands)


@pytest.mark.slow
def test_the_readme_walkthrough_runs_on_a_tiny_run(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["run", "--preset", "tiny", "--out", str(run_dir)]) == 0
    for argv in walkthrough(run_dir, tmp_path / "out"):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 0, f"`lmforge {shlex.join(argv)}` exited {code}: {err[-2000:]}"
