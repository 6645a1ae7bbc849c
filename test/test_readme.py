"""The README's commands cannot rot: every ``person-search`` command in it parses, the marked blocks run.

* Every fenced shell block of README.md and docs/*.md, and every inline `` `person-search ...` ``
  span, is read; each ``person-search ...`` command (also as
  ``tools/env.sh person-search``, ``ros2 run person_search person-search``, ``python -m
  person_search``) must parse with the real argument parser. Optional parts written
  ``[--flag VALUE | --other]`` are checked flag by flag against the sub-command's options.
* A block preceded by ``<!-- run: ... with --flag V, --other W -->`` is run as written, in
  order, in a temporary folder, offline, with those flags set smaller (replaced where a
  command has them, added where its sub-command takes them); every command must exit 0.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from benchmarks.readme_runs import blocks, cli_argv, commands
from person_search.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def split_optional(argv: List[str]) -> Tuple[List[str], List[List[List[str]]]]:
    """Split ``[...]`` groups off: (the required arguments, per group its ``|`` alternatives)."""
    base: List[str] = []
    groups: List[List[List[str]]] = []
    depth, cur = 0, []
    for tok in argv:
        if tok == "...":
            continue
        opens, closes = tok.count("["), tok.count("]")
        if depth == 0 and opens and tok.startswith("["):
            depth, cur = opens, []
        if depth:
            cur.append(tok.strip("[]"))
            depth += (opens if cur and len(cur) > 1 else 0) - closes
            if depth <= 0:
                depth = 0
                alts, alt = [], []
                for t in cur:
                    if t == "|":
                        alts.append(alt)
                        alt = []
                    elif t:
                        alt.append(t)
                alts.append(alt)
                groups.append(alts)
        else:
            base.append(tok)
    return base, groups


def subparser(parser: argparse.ArgumentParser, argv: List[str]) -> argparse.ArgumentParser:
    """Walk the sub-command words of ``argv`` down to the parser that takes the options."""
    p = parser
    for tok in argv:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or tok not in subs[0].choices:
            break
        p = subs[0].choices[tok]
    return p


def parse_error(argv: List[str]) -> str:
    """Return "" when ``argv`` parses, else argparse's one line."""
    import contextlib
    import io
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            build_parser().parse_args(argv)
    except SystemExit as exc:
        return err.getvalue().strip() or f"exit {exc.code}"
    return ""


def inline_commands(text: str) -> List[str]:
    """Return the ``person-search ...`` commands written inline in prose (backticks, maybe wrapped)."""
    spans = [re.sub(r"\s+", " ", s) for s in re.findall(r"`((?:tools/env\.sh )?person-search [^`]+)`", text)]
    return [s for s in spans if " --" in s and "|" not in s and "..." not in s]  # not names like `person-search run`


DOCS = [README, ROOT / "models" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_COMMANDS = [(i, line, argv) for i, (body, _) in enumerate(blocks(README.read_text()))
                   for line in commands(body) for argv in [cli_argv(line)] if argv is not None]
DOC_COMMANDS = sorted({line for doc in DOCS for body, _ in blocks(doc.read_text()) for line in commands(body)
                       if cli_argv(line) is not None}
                      | {line for doc in DOCS for line in inline_commands(doc.read_text())})


def test_the_readme_has_person_search_commands_and_run_blocks():
    assert len(README_COMMANDS) >= 20, README_COMMANDS
    assert sum(1 for _, mark in blocks(README.read_text()) if mark) >= 2


@pytest.mark.parametrize("line", DOC_COMMANDS)
def test_readme_command_parses(line):
    """Each command of the README and docs/ parses; its optional parts name real options."""
    argv = cli_argv(line)
    base, groups = split_optional(argv)
    assert not parse_error(base), (line, parse_error(base))
    options = subparser(build_parser(), base)._option_string_actions
    unknown = [t.split("=")[0] for alts in groups for alt in alts for t in alt
               if t.startswith("--") and t.split("=")[0] not in options]
    assert not unknown, f"{line}: unknown options {unknown}"


def test_the_checker_fails_on_what_would_rot():
    assert parse_error(["run", "v.mp4", "--no-such-flag"])
    assert parse_error(["run", "v.mp4", "--top-k", "0"])
    assert parse_error(["gallery", "frobnicate", "g.npz"])
    base, groups = split_optional(cli_argv('person-search query "x" [--last 60] [--json | --frames] ...'))
    assert base == ["query", "x"] and groups == [[["--last", "60"]], [["--json"], ["--frames"]]]


def smaller(mark: str) -> Dict[str, str]:
    """The ``with --flag V, --other W`` part of a run mark."""
    return dict(re.findall(r"(--[\w-]+) (\S+?)(?:,|\s|$)", mark.split(" with ", 1)[1])) if " with " in mark else {}


def shrink(argv: List[str], flags: Dict[str, str]) -> List[str]:
    """Set the given flags in a command: replace their values, or add those its sub-command takes."""
    out = list(argv)
    options = subparser(build_parser(), argv)._option_string_actions
    for flag, value in flags.items():
        if flag in out:
            out[out.index(flag) + 1] = value
        elif flag in options:
            out += [flag, value]
    return out


RUN_BLOCKS = [(body, mark) for body, mark in blocks(README.read_text()) if mark]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # several processes that each load models: minutes on a loaded 2-core machine
@pytest.mark.parametrize("body,mark", RUN_BLOCKS, ids=[f"block{i}" for i in range(len(RUN_BLOCKS))])
def test_readme_block_runs_as_written(tmp_path, body, mark):
    """Run a marked block command by command in an empty folder, offline, with the smaller settings."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", YOLO_OFFLINE="1", PYTHONPATH=str(ROOT))
    flags = smaller(mark)
    for line in commands(body):
        argv = cli_argv(line)
        assert argv is not None, f"a run block holds only person-search commands: {line}"
        redirect = shlex.split(line, comments=True)
        target = redirect[redirect.index(">") + 1] if ">" in redirect else None
        cmd = [str(ROOT / "tools" / "env.sh"), "person-search", *shrink(argv, flags)]
        try:
            proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"{line}: no end after 600 s: {(exc.stderr or b'')[-2000:]!r}")
        assert proc.returncode == 0, (line, proc.stderr[-3000:])
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        if target:
            (tmp_path / target).write_text(proc.stdout)
            if "--json" in argv:
                json.loads(proc.stdout)  # nothing but the JSON document on stdout
