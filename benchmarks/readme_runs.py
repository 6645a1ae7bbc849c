"""Run a README block as written and record what each command printed: the results file the README quotes.

The README's worked examples (the "CPU, no ROS" block, the "Lab" block) are marked
``<!-- run: ... -->``; ``test/test_readme.py`` runs them with smaller settings in the test
suite. This script runs one of them **as written** (full size), command by command, in an
empty folder, offline, and writes every command's wall time, exit code and output lines with
the run record (commit, machine, load) to a results file, from which the README's figures
are copied:

    python -m benchmarks.readme_runs --section "CPU, no ROS" --json docs/readme_cpu_run.json
    python -m benchmarks.readme_runs --section "Lab" --json docs/readme_lab_recipe.json

A command that fails stops the run; the file then says which one and keeps its output.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Tuple

from benchmarks.common import ROOT, new_record, write_results

README = ROOT / "README.md"
PREFIXES = (("tools/env.sh", "person-search"), ("ros2", "run", "person_search", "person-search"),
            ("tools/env.sh", "python", "-m", "person_search"), ("python", "-m", "person_search"),
            ("person-search",))
RUN_MARK = re.compile(r"<!--\s*run:(.*?)-->", re.S)
KEEP_LINES = 80  # output lines kept per stream and command (the last ones)


def blocks(text: str) -> List[Tuple[str, Optional[str]]]:
    """Return (body, run mark or None) of every fenced bash / sh / shell block."""
    out = []
    for m in re.finditer(r"(?P<pre>[^\n]*)\n```(?:bash|sh|shell)\n(?P<body>.*?)\n```", text, re.S):
        mark = RUN_MARK.search(m.group("pre"))
        out.append((m.group("body"), mark.group(1) if mark else None))
    return out


def commands(body: str) -> List[str]:
    """Return the command lines of a block (continuations joined, comments kept for shlex)."""
    return [c.strip() for c in re.sub(r"\\\n\s*", " ", body).split("\n") if c.strip() and not c.startswith("#")]


def cli_argv(line: str) -> Optional[List[str]]:
    """Return the person-search arguments of a command line, or None when it runs something else."""
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:
        return None
    for prefix in PREFIXES:
        if tuple(tokens[:len(prefix)]) == prefix:
            argv = tokens[len(prefix):]
            return argv[:argv.index(">")] if ">" in argv else argv
    return None


def section_block(text: str, section: str) -> str:
    """Return the first marked run block under the ``## ...`` heading that starts with ``section``."""
    for part in re.split(r"\n(?=## )", text):
        title = part.split("\n", 1)[0].lstrip("# ").strip()
        if title.startswith(section):
            marked = [body for body, mark in blocks(part) if mark]
            if marked:
                return marked[0]
    raise SystemExit(f"README.md has no marked run block under a heading starting with {section!r}")


def run_block(body: str, cwd: Path) -> Tuple[list, bool]:
    """Run the block's commands in ``cwd``; return one record per command and whether all exited 0."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", YOLO_OFFLINE="1", PYTHONPATH=str(ROOT))
    steps = []
    for line in commands(body):
        argv = cli_argv(line)
        if argv is None:
            raise SystemExit(f"a run block holds only person-search commands: {line}")
        tokens = shlex.split(line, comments=True)
        target = tokens[tokens.index(">") + 1] if ">" in tokens else None
        print(f"$ {line}", flush=True)
        t0 = time.monotonic()
        proc = subprocess.run([str(ROOT / "tools" / "env.sh"), "person-search", *argv], cwd=cwd, env=env,
                              capture_output=True, text=True)
        wall = time.monotonic() - t0
        if target:
            (cwd / target).write_text(proc.stdout)
        step = {"command": line, "exit_code": proc.returncode, "wall_s": round(wall, 1),
                "stdout": proc.stdout.splitlines()[-KEEP_LINES:],
                "stderr": [s for s in proc.stderr.splitlines() if "\r" not in s][-KEEP_LINES:]}
        steps.append(step)
        print(f"  exit {proc.returncode}, {wall:.0f} s", flush=True)
        if proc.returncode != 0:
            return steps, False
    return steps, True


def main(argv=None) -> int:
    """Run the README block under ``--section`` as written and write its results file."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--section", required=True, help="the start of the README heading above the block")
    ap.add_argument("--json", required=True, metavar="FILE", help="the results file to write")
    ap.add_argument("--keep", default="", metavar="DIR", help="run in DIR (kept) instead of a temporary folder")
    args = ap.parse_args(argv)
    body = section_block(README.read_text(), args.section)
    record = new_record(vars(args), "readme_runs")
    t0 = time.monotonic()
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        steps, ok = run_block(body, Path(args.keep).resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="readme-run-") as tmp:
            steps, ok = run_block(body, Path(tmp))
    write_results(args.json, record, what=f"README block under '{args.section}', run as written in an empty folder",
                  generated_data=True, ok=ok, total_wall_s=round(time.monotonic() - t0, 1), steps=steps)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
