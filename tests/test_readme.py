"""The README runs as written, and the names it and the changelog use exist.

* Every ```python block of README.md is executed as it stands, each in a fresh namespace and an
  empty temporary working directory (one thread, matplotlib's Agg backend, warnings are errors);
  a failure names the block's line and first line. Files a block writes with ``path="..."``
  must exist afterwards.
* Every ``isometry`` command line of the README parses with the real parser (```bash blocks), and
  every flag it mentions (synopses, prose) belongs to the verb it is used with.
* Every fully qualified ``isometry.<name>`` in inline code resolves, with the parameter names its
  written signature shows; the changelog's new names resolve and its removed names do not.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import shlex
import traceback
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CHANGELOG = ROOT / "CHANGELOG.md"

FENCE = re.compile(r"^```(\w*)\s*$")


def fenced_blocks(text: str) -> list[tuple[str, int, str]]:
    """(language, line number of the first code line, code) of every fenced block."""
    blocks, lang, start, body = [], None, 0, []
    for no, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if lang is None and m:
            lang, start, body = m.group(1), no + 1, []
        elif lang is not None and line.rstrip() == "```":
            blocks.append((lang, start, "\n".join(body) + "\n"))
            lang = None
        elif lang is not None:
            body.append(line)
    assert lang is None, f"README.md: the block opened at line {start - 1} is never closed"
    return blocks


def prose(text: str) -> str:
    """The text outside fenced blocks."""
    out, inside = [], False
    for line in text.splitlines():
        if FENCE.match(line) or (inside and line.rstrip() == "```"):
            inside = not inside
            continue
        if not inside:
            out.append(line)
    return "\n".join(out)


README_TEXT = README.read_text(encoding="utf-8")
PYTHON_BLOCKS = [(line, code) for lang, line, code in fenced_blocks(README_TEXT) if lang == "python"]


def _first_line(code: str) -> str:
    return next((ln.strip() for ln in code.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")


# ------------------------------------------------------------------------------ python snippets
def test_readme_has_its_python_snippets():
    assert len(PYTHON_BLOCKS) >= 8, "README.md lost its Python examples (or the ```python fences)"


@pytest.mark.parametrize("line, code", PYTHON_BLOCKS, ids=[f"line{line}" for line, _ in PYTHON_BLOCKS])
def test_python_snippet_runs(line, code, tmp_path, monkeypatch):
    needs_torch = r"^\s*(import torch|from isometry\.torch|import isometry\.torch|from isometry\.experiments)"
    if re.search(needs_torch, code, re.M):
        pytest.importorskip("torch")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    try:
        exec(compile(code, f"README.md:{line}", "exec"), namespace)
    except Exception as exc:  # noqa: BLE001  (report any failure with the block it came from)
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == f"README.md:{line}"]
        where = f" (README.md line {line + frames[-1].lineno - 1})" if frames else ""
        pytest.fail(f"README.md python block at line {line}, starting {_first_line(code)!r}, failed{where}: "
                    f"{type(exc).__name__}: {exc}", pytrace=False)
    finally:
        plt.close("all")
    for written in re.findall(r"""path\s*=\s*["']([^"']+)["']""", code):
        f = tmp_path / written
        assert f.is_file() and f.stat().st_size > 0, (
            f"README.md python block at line {line}, starting {_first_line(code)!r}: {written} was not written")


# ------------------------------------------------------------------------------ command lines
def _verbs() -> dict[str, argparse.ArgumentParser]:
    from isometry.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _command_lines(lang_filter) -> list[tuple[int, str]]:
    """The ``isometry ...`` lines of the README's non-Python blocks, continuation lines joined."""
    out = []
    for lang, start, code in fenced_blocks(README_TEXT):
        if not lang_filter(lang):
            continue
        lines = code.splitlines()
        i = 0
        while i < len(lines):
            text, no = lines[i], start + i
            while text.rstrip().endswith("\\") and i + 1 < len(lines):  # shell continuation
                i += 1
                text = text.rstrip()[:-1] + " " + lines[i].strip()
            while lang != "bash" and i + 1 < len(lines) and lines[i + 1].startswith(" ") and \
                    text.lstrip().startswith("isometry "):  # a synopsis wrapped onto indented lines
                i += 1
                text += " " + lines[i].strip()
            for segment in text.split("&&"):
                if segment.strip().startswith("isometry "):
                    out.append((no, segment.strip()))
            i += 1
    return out


def _flags(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", text))


def test_readme_command_lines_parse():
    from isometry.cli import UsageError, build_parser

    lines = _command_lines(lambda lang: lang == "bash")
    assert len(lines) >= 10
    for no, text in lines:
        argv = shlex.split(text, comments=True)[1:]
        try:
            args = build_parser().parse_args(argv)
        except (UsageError, SystemExit) as exc:
            pytest.fail(f"README.md line {no}: {text!r} does not parse: {exc}", pytrace=False)
        assert getattr(args, "func", None), f"README.md line {no}: {text!r} names no command"


def test_readme_synopses_use_existing_flags():
    verbs = _verbs()
    lines = _command_lines(lambda lang: lang in ("text", ""))
    assert {text.split()[1] for _, text in lines} >= set(verbs), "every verb should have a synopsis"
    for no, text in lines:
        verb = text.split()[1]
        assert verb in verbs, f"README.md line {no}: unknown command {verb!r}"
        code = re.split(r"\s#\s", text, maxsplit=1)[0]  # a trailing comment is prose
        unknown = _flags(code) - set(verbs[verb]._option_string_actions)
        assert not unknown, f"README.md line {no}: isometry {verb} has no {sorted(unknown)}"


def test_readme_prose_flags_exist():
    """A flag named in running text belongs to some verb (commands of other tools excepted)."""
    known = set().union(*(p._option_string_actions for p in _verbs().values()))
    for span in re.findall(r"`([^`]+)`", prose(README_TEXT)):
        if span.split()[0] in ("pip", "ray", "python", "python3"):
            continue
        unknown = {f for f in _flags(span) if f.startswith("--")} - known
        assert not unknown, f"README.md mentions {sorted(unknown)} in `{span}`, which no isometry verb has"


# ------------------------------------------------------------------------------ names
def resolve(dotted: str):
    """The object named ``isometry.a.b.c`` (importing the longest module prefix); AttributeError if absent."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError as exc:
            if exc.name in ("torch", "ray"):
                pytest.skip(f"{dotted} needs {exc.name}")
            continue
        for p in parts[i:]:
            obj = getattr(obj, p)
        return obj
    raise AttributeError(dotted)


NAME = re.compile(r"\bisometry(?:\.[A-Za-z_]\w*)+")


def _written_parameters(span: str, name: str) -> list[str]:
    """The parameter names of ``name(a, b=1, *, c=None, ...)`` as written in ``span``."""
    rest = span[span.index(name) + len(name):]
    if not rest.startswith("("):
        return []
    depth, body = 0, ""
    for ch in rest:
        depth += ch in "([{"
        depth -= ch in ")]}"
        body += ch
        if depth == 0:
            break
    pieces, depth, cur = [], 0, ""
    for ch in body[1:-1]:
        if ch == "," and depth == 0:
            pieces.append(cur)
            cur = ""
            continue
        depth += ch in "([{"
        depth -= ch in ")]}"
        cur += ch
    pieces.append(cur)
    names = []
    for piece in pieces:
        word = piece.split("=")[0].strip()
        if word.isidentifier() and word not in ("self",):
            names.append(word)
    return names


def test_readme_names_and_signatures_exist():
    spans = re.findall(r"`([^`]+)`", prose(README_TEXT))
    checked = 0
    for span in spans:
        for name in NAME.findall(span):
            try:
                obj = resolve(name)
            except AttributeError:
                pytest.fail(f"README.md names `{name}`, which does not exist", pytrace=False)
            checked += 1
            written = _written_parameters(span, name)
            if written and callable(obj):
                params = inspect.signature(obj).parameters
                if any(p.kind is p.VAR_KEYWORD for p in params.values()):
                    continue
                missing = [w for w in written if w not in params]
                assert not missing, f"README.md: `{name}` has no parameter {missing} (it has {list(params)})"
    assert checked >= 30


def _changelog_release(version: str) -> str:
    text = CHANGELOG.read_text(encoding="utf-8")
    return text.split(f"## {version}", 1)[1].split("\n## ", 1)[0]


def _section(release: str, title: str) -> str:
    return release.split(f"### {title}", 1)[1].split("\n### ", 1)[0]


# names a rename moved whose old spelling stays importable because the old module imports them
STILL_IMPORTABLE = {"isometry.experiments.train.RunConfig"}


def test_changelog_new_names_exist_and_removed_names_are_gone():
    release = _changelog_release("0.2.0")
    gone, new = set(), set()
    for entry in re.split(r"\n(?=- )|\n\n", _section(release, "Renamed (old -> new)")):
        if "->" not in entry:
            continue
        old_part, new_part = entry.split("->", 1)
        gone |= set(NAME.findall(old_part))
        new |= set(NAME.findall(new_part))
    for entry in re.split(r"\n(?=- )|\n\n", _section(release, "Removed")):
        head = entry.split("(", 1)[0]  # what follows in parentheses says what to use instead
        gone |= set(NAME.findall(head))
    new |= set(NAME.findall(_section(release, "Added")))
    assert len(gone) >= 15 and len(new) >= 25
    for name in sorted(new):
        try:
            resolve(name)
        except AttributeError:
            pytest.fail(f"CHANGELOG.md: the new name `{name}` does not exist", pytrace=False)
    for name in sorted(gone - STILL_IMPORTABLE):
        try:
            resolve(name)
        except AttributeError:
            continue
        pytest.fail(f"CHANGELOG.md says `{name}` was renamed or removed, but it still exists", pytrace=False)


def test_no_development_history_in_the_docs():
    for path in (README, CHANGELOG):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\(issue \d+\)|<!--\s*section|\bissue \d+", text, re.I), path.name
