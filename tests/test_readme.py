"""The README and the pages of docs/ run as written, and the names they and the changelog use exist.

* Every ```python block of README.md and docs/*.md is executed as it stands, each in a fresh
  namespace and an empty temporary working directory (one thread, matplotlib's Agg backend,
  warnings are errors); a failure names the file, the block's line and its first line. Files a
  block writes with ``path="..."`` must exist afterwards.
* Every ``isometry`` command line of those pages parses with the real parser (```bash blocks, and
  the ``$ isometry ...`` lines of ```console blocks), and every flag they mention (synopses, prose)
  belongs to the verb it is used with (or to ``isometry`` itself).
* Every fully qualified ``isometry.<name>`` in inline code resolves, with the parameter names its
  written signature shows; the changelog's new names resolve and its removed names do not.
* README.md links every page of docs/, and every relative link of the pages reaches a file (and,
  with ``#anchor``, one of its headings).
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
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]  # the README first, then docs/ in name order

FENCE = re.compile(r"^```(\w*)\s*$")


def fenced_blocks(text: str, name: str = "README.md") -> list[tuple[str, int, str]]:
    """(language, line number of the first code line, code) of every fenced block of page ``name``."""
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
    assert lang is None, f"{name}: the block opened at line {start - 1} is never closed"
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


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


TEXTS = {_name(p): p.read_text(encoding="utf-8") for p in PAGES}
README_TEXT = TEXTS["README.md"]
PYTHON_BLOCKS = [(name, line, code) for name, text in TEXTS.items()
                 for lang, line, code in fenced_blocks(text, name) if lang == "python"]


def _first_line(code: str) -> str:
    return next((ln.strip() for ln in code.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")


# ------------------------------------------------------------------------------ python snippets
def test_readme_has_its_python_snippets():
    in_readme = [b for b in PYTHON_BLOCKS if b[0] == "README.md"]
    assert len(in_readme) >= 6, "README.md lost its Python examples (or the ```python fences)"
    assert len(PYTHON_BLOCKS) - len(in_readme) >= 10, "docs/ lost its Python examples (or the ```python fences)"


@pytest.mark.parametrize("name, line, code", PYTHON_BLOCKS, ids=[f"{name}:{line}" for name, line, _ in PYTHON_BLOCKS])
def test_python_snippet_runs(name, line, code, tmp_path, monkeypatch):
    needs_torch = r"^\s*(import torch|from isometry\.torch|import isometry\.torch|from isometry\.experiments)"
    if re.search(needs_torch, code, re.M):
        pytest.importorskip("torch")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    try:
        exec(compile(code, f"{name}:{line}", "exec"), namespace)
    except Exception as exc:  # noqa: BLE001  (report any failure with the block it came from)
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == f"{name}:{line}"]
        where = f" ({name} line {line + frames[-1].lineno - 1})" if frames else ""
        pytest.fail(f"{name} python block at line {line}, starting {_first_line(code)!r}, failed{where}: "
                    f"{type(exc).__name__}: {exc}", pytrace=False)
    finally:
        plt.close("all")
    for written in re.findall(r"""path\s*=\s*["']([^"']+)["']""", code):
        f = tmp_path / written
        assert f.is_file() and f.stat().st_size > 0, (
            f"{name} python block at line {line}, starting {_first_line(code)!r}: {written} was not written")


# ------------------------------------------------------------------------------ command lines
def _verbs() -> dict[str, argparse.ArgumentParser]:
    from isometry.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _command_lines(lang_filter, names=None) -> list[tuple[str, int, str]]:
    """(page, line, text) of the ``isometry ...`` lines of the pages' non-Python blocks, continuation
    lines joined; in ```console blocks only the ``$ isometry ...`` lines (the rest is output)."""
    out = []
    for name, page in TEXTS.items():
        if names is not None and name not in names:
            continue
        out += _page_command_lines(name, page, lang_filter)
    return out


def _page_command_lines(name: str, page: str, lang_filter) -> list[tuple[str, int, str]]:
    out = []
    for lang, start, code in fenced_blocks(page, name):
        if not lang_filter(lang):
            continue
        lines = code.splitlines()
        if lang == "console":
            lines = [ln[2:] if ln.startswith("$ ") else "" for ln in lines]
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
                    out.append((name, no, segment.strip()))
            i += 1
    return out


def _flags(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", text))


def _global_flags() -> set[str]:
    from isometry.cli import build_parser

    return set(build_parser()._option_string_actions)


def test_readme_command_lines_parse():
    from isometry.cli import UsageError, build_parser

    lines = _command_lines(lambda lang: lang in ("bash", "console"))
    assert len([ln for ln in lines if ln[0] == "README.md"]) >= 5
    assert len(lines) >= 30
    for name, no, text in lines:
        argv = shlex.split(text, comments=True)[1:]
        try:
            args = build_parser().parse_args(argv)
        except (UsageError, SystemExit) as exc:
            pytest.fail(f"{name} line {no}: {text!r} does not parse: {exc}", pytrace=False)
        assert getattr(args, "func", None), f"{name} line {no}: {text!r} names no command"


def test_readme_synopses_use_existing_flags():
    verbs = _verbs()
    in_readme = _command_lines(lambda lang: lang in ("text", ""), names={"README.md"})
    assert {text.split()[1] for _, _, text in in_readme} >= set(verbs), "README.md should show every verb"
    lines = _command_lines(lambda lang: lang in ("text", ""))
    for name, no, text in lines:
        words = text.split()
        verb = words[1]
        assert verb in verbs, f"{name} line {no}: unknown command {verb!r}"
        code = re.split(r"\s#\s", text, maxsplit=1)[0]  # a trailing comment is prose
        unknown = _flags(code) - set(verbs[verb]._option_string_actions)
        assert not unknown, f"{name} line {no}: isometry {verb} has no {sorted(unknown)}"


def test_readme_prose_flags_exist():
    """A flag named in running text belongs to some verb or to ``isometry`` itself (commands of other
    tools excepted)."""
    known = set().union(_global_flags(), *(p._option_string_actions for p in _verbs().values()))
    checked = 0
    for name, page in TEXTS.items():
        for span in re.findall(r"`([^`]+)`", prose(page)):
            if span.split()[0] in ("pip", "ray", "python", "python3"):
                continue
            flags = {f for f in _flags(span) if f.startswith("--")}
            checked += len(flags)
            unknown = flags - known
            assert not unknown, f"{name} mentions {sorted(unknown)} in `{span}`, which no isometry verb has"
    assert checked >= 40


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
    checked = 0
    for page_name, page in TEXTS.items():
        for span in re.findall(r"`([^`]+)`", prose(page)):
            for name in NAME.findall(span):
                try:
                    obj = resolve(name)
                except AttributeError:
                    pytest.fail(f"{page_name} names `{name}`, which does not exist", pytrace=False)
                checked += 1
                written = _written_parameters(span, name)
                if written and callable(obj):
                    params = inspect.signature(obj).parameters
                    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
                        continue
                    missing = [w for w in written if w not in params]
                    assert not missing, (f"{page_name}: `{name}` has no parameter {missing} "
                                         f"(it has {list(params)})")
    assert checked >= 60


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


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(text: str) -> set[str]:
    return {_slug(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*$", prose(text), re.M)}


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_docs_are_linked_and_links_resolve():
    linked = set()
    checked = 0
    for name, page in TEXTS.items():
        here = (ROOT / name).parent
        for target in LINK.findall(prose(page)):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (here / path).resolve() if path else ROOT / name
            assert dest.exists(), f"{name} links to {target!r}, which does not exist"
            if dest.is_file() and dest.suffix == ".md":
                linked.add(dest)
                if anchor:
                    assert anchor in _anchors(dest.read_text(encoding="utf-8")), (
                        f"{name} links to {target!r}, but {dest.name} has no heading with that anchor")
            checked += 1
    from_readme = {(ROOT / t.split("#")[0]).resolve() for t in LINK.findall(prose(README_TEXT)) if t.startswith("docs/")}
    missing = sorted(p.name for p in DOCS.glob("*.md") if p.resolve() not in from_readme)
    assert not missing, f"README.md does not link docs/{missing}"
    assert checked >= 20


def test_no_development_history_in_the_docs():
    marker = re.compile(r"\(issue \d+\)|<!--\s*section|\bissue \d+|\(#\d+\)|\b(TODO|FIXME|XXX)\b", re.I)
    for path in (*PAGES, CHANGELOG):
        text = path.read_text(encoding="utf-8")
        m = marker.search(text)
        assert not m, f"{_name(path)}: {m.group(0)!r} at line {text[:m.start()].count(chr(10)) + 1}"
