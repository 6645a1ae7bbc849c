"""What the command groups share: ``--set`` parsing, config loading, argument checks, the match table."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import yaml

from person_search.core.config import ConfigError


def parse_sets(items: Sequence[str]) -> Dict[str, object]:
    """Parse ``section.key=value`` items (values as YAML) into a flat dict; ConfigError names a bad one."""
    out: Dict[str, object] = {}
    for item in items or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = yaml.safe_load(v) if v != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {k}: the value {v!r} is not valid YAML ({str(exc).splitlines()[0]})") from exc
    return out


class UsageError(ValueError):
    """A user error found by the command line itself (one line, exit code 2)."""


_JSON_OUT: Optional[io.TextIOBase] = None  # the real stdout while --json reserves it


@contextlib.contextmanager
def json_stdout(enabled: bool):
    """Reserve stdout for the ``--json`` document while a command runs.

    Everything else written to stdout -- this package's prints, ultralytics' and OpenVINO's
    messages, also from C++ -- goes to stderr (file descriptor 1 is pointed at 2), so
    ``person-search run ... --json | jq`` always parses. :func:`print_json` writes to the real
    stdout.
    """
    global _JSON_OUT
    if not enabled:
        yield
        return
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):  # a captured stdout (tests): swap objects
        real = sys.stdout
        sys.stdout, _JSON_OUT = sys.stderr, real
        try:
            yield
        finally:
            sys.stdout, _JSON_OUT = real, None
        return
    saved = os.dup(fd)
    os.dup2(sys.stderr.fileno(), fd)
    _JSON_OUT = os.fdopen(os.dup(saved), "w")
    try:
        yield
    finally:
        sys.stdout.flush()
        _JSON_OUT.close()
        _JSON_OUT = None
        os.dup2(saved, fd)
        os.close(saved)


def print_json(obj) -> None:
    """Print ``obj`` as one JSON document on stdout (the ``--json`` output)."""
    out = _JSON_OUT or sys.stdout
    json.dump(obj, out, indent=2, default=str)
    out.write("\n")
    out.flush()


def int_at_least(lo: int):
    """Return an argparse type: an integer >= ``lo`` (else one-line usage error, exit 2)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expects an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        return v
    parse.__name__ = "integer"
    return parse


def float_above(lo: float, *, inclusive: bool = False, hi: Optional[float] = None):
    """Return an argparse type: a finite number > ``lo`` (>= with ``inclusive``), at most ``hi``."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expects a number, got {text!r}") from None
        if v != v or v in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if v < lo or (v == lo and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {'>=' if inclusive else '>'} {lo:g}, got {v:g}")
        if hi is not None and v > hi:
            raise argparse.ArgumentTypeError(f"must be <= {hi:g}, got {v:g}")
        return v
    parse.__name__ = "number"
    return parse


def parse_wxh(text: str, flag: str, *, person: bool = False) -> Tuple[int, int]:
    """Parse WIDTHxHEIGHT, the order of every ``--size`` / ``--image-size``; return (height, width).

    Args:
        text: e.g. "128x384" (128 wide, 384 tall).
        flag: the option's name, for the error line.
        person: person images (crops, dataset images, model inputs) are taller than wide: a
            wider-than-tall size is the older HxW order, refused with the size it meant.

    Raises:
        UsageError: not two positive integers joined by "x", or a person size wider than tall.
    """
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise UsageError(f"{flag} expects WIDTHxHEIGHT such as {'128x384' if person else '1920x1080'}, not {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if person and w > h:
        raise UsageError(f"{flag} is WIDTHxHEIGHT (like every --size): {text} would be {w} wide and {h} tall, but "
                         f"person images are taller than wide; for {w} tall and {h} wide write {h}x{w}")
    return h, w


def check_descriptions(texts: Sequence[str], *, max_chars: int = 1000) -> List[str]:
    """Check every description before any work starts (UsageError names the bad one)."""
    from person_search.core.query import QueryError, validate_description
    for i, t in enumerate(texts, 1):
        try:
            validate_description(t, max_chars=max_chars)
        except QueryError as exc:
            raise UsageError(f"{exc}" + (f" (description {i} of {len(texts)})" if len(texts) > 1 else "")) from None
    return list(texts)


def require_clip_weights(enc) -> None:
    """Refuse, before any model loads, CLIP weights that cannot be had here; the line says how to go on."""
    from person_search.core.models.weights import WeightsError, resolve_weights
    try:
        resolve_weights(enc.arch, enc.weights)  # finds (or fetches, when online) the file; builds no model
    except WeightsError as exc:
        raise UsageError(f"{str(exc).splitlines()[0]}; or pass --random-weights to run with a randomly initialised "
                         f"{enc.arch} (the pipeline works, the ranking means nothing)") from None


def sets_to_overrides(sets: Dict[str, object]) -> Dict[str, Dict[str, object]]:
    """Turn flat ``section.key`` overrides into ``{section: {key: value}}``."""
    ov: Dict[str, Dict[str, object]] = {}
    for k, v in sets.items():
        sec, key = k.split(".", 1)
        ov.setdefault(sec, {})[key] = v
    return ov


def load_config_args(a):
    """Load the pipeline config named by ``--config`` with ``--set`` / ``--random-weights``."""
    from person_search.core.config import load_config
    from person_search.graph import config_path
    sets = parse_sets(a.set)
    if getattr(a, "random_weights", False):
        sets["encoder.weights"] = ""
    return load_config(config_path(a.config), sets_to_overrides(sets))


def match_row(*, track_id: int, camera: str, score: float, first_seen_ns: int, last_seen_ns: int,
              box: Iterable[float], **extra) -> dict:
    """Return one row of the match table (extra keys, e.g. crop messages, ride along)."""
    return dict(track_id=int(track_id), camera=camera, score=float(score), first_seen_ns=int(first_seen_ns),
                last_seen_ns=int(last_seen_ns), box=[float(v) for v in box], **extra)


def print_matches(rows: List[dict], *, out=None) -> None:
    """Print a table of match rows: rank, track, camera, score, first/last seen, box."""
    out = out or sys.stdout
    if not rows:
        print("no matches", file=out)
        return
    print(f"{'rank':>4}  {'track':>11}  {'camera':<10} {'score':>7}  {'first seen':>12}  {'last seen':>12}  box",
          file=out)
    for i, m in enumerate(rows, 1):
        first, last = fmt_time(m["first_seen_ns"]), fmt_time(m["last_seen_ns"])
        box = ",".join(f"{v:.0f}" for v in m["box"])
        print(f"{i:>4}  {m['track_id']:>11}  {m['camera']:<10} {m['score']:>7.4f}  {first:>12}  {last:>12}  {box}",
              file=out)


def fmt_time(ns: int) -> str:
    """Format a nanosecond stamp as local HH:MM:SS.mmm ("-" for none)."""
    if ns <= 0:
        return "-"
    t = ns / 1e9
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int((t % 1) * 1000):03d}"
