"""What the command groups share: ``--set`` parsing, config loading, the match table."""

from __future__ import annotations

import json
import sys
import time
from typing import Dict, Iterable, List, Sequence

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


def print_json(obj) -> None:
    """Print ``obj`` as one JSON document on stdout (the ``--json`` output)."""
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


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
    from person_search.launcher import config_path
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
