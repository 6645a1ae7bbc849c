"""People, not tracks: tracks linked into persons by re-id evidence.

A :class:`PersonLinker` keeps, per track (camera, track id), the running mean of its
L2-normalised re-id features, its first/last time and a ``person_id``. Every new track
starts as a person of its own. Once it has ``reid.min_link_crops`` features it is decided,
once: it joins the earlier person whose appearance (the normalised mean of the
means of that person's decided tracks) is closest, when

* that cosine is >= ``reid.link_threshold`` and beats the second-best person by
  ``reid.link_margin`` (an ambiguous track stays alone), and
* no track of that person was seen in the same camera during this track's time span
  (one camera cannot show one person twice at once).

Guards against chaining (A~B, B~C, so A=C): a track is compared with a person's mean,
not with its nearest track; only decided tracks (several crops) shape a person; persons are
never merged with each other after the fact, only single new tracks join. A track whose
person later shows up alongside it in the same camera (the tracker revived an old id) is
split off again.

The linker does not depend on the gallery backend (FAISS or Milvus): it is keyed by
(camera, track id) like both of them. It saves to / loads from an ``.npz`` of its own
(:meth:`save`, :meth:`load`), next to the gallery snapshot.

Several linkers (index nodes of several robots) share their persons through a
:class:`SharedPersons` store (:meth:`PersonLinker.attach`; the Milvus gallery gives one,
``MilvusGallery.person_store``): every *decided* track is written there (its mean feature,
person id, camera, time span), and the other writers' decided tracks are read back
(:meth:`PersonLinker.sync`) before a decision and before an answer: only the rows written since
the last read of each writer (its own clock's ``updated`` stamp), with a full re-read every
``FULL_SYNC_S`` that also drops what the others forgot. A new track of robot B
is then decided against robot A's persons too, with the same rules (person mean, threshold,
margin, no two tracks of one person at once in one camera); remote tracks are never
changed here, only joined. Person ids are then drawn from a range of this writer's own
(``store.id_base``) so that two robots never hand out the same id.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from person_search.core.config import ReidConfig
from person_search.core.types import TrackMatch

Key = Tuple[str, int]  # (camera / source id, track id)
FORMAT = 1
FULL_SYNC_S = 30.0  # seconds between full re-reads of the shared persons (between them: only what changed)


@dataclass
class _Track:
    first_ns: int
    last_ns: int
    mean: np.ndarray  # running mean of unit features (not normalised)
    n: int
    person: int
    decided: bool = False
    joined: bool = False  # True when the decision linked it to an earlier person
    remote: bool = False  # another writer's track, read from the shared store (never changed here)


@dataclass
class SharedTrack:
    """One decided track as a shared person store holds it."""

    source_id: str
    track_id: int
    person: int
    first_ns: int
    last_ns: int
    n: int
    mean: np.ndarray  # unit re-id feature
    writer: int = 0  # who wrote it (a store's writer id)
    updated_ns: int = 0  # when, on the writer's clock (incremental reads follow it per writer)


class SharedPersons(Protocol):
    """Where several linkers (robots) keep their decided tracks (see the module doc)."""

    model_id: str
    id_base: int  # this writer's person ids start above this

    def put(self, tracks: Sequence[SharedTrack]) -> None:
        """Write (upsert) this writer's decided tracks."""

    def remove(self, keys: Sequence[Key]) -> None:
        """Delete this writer's tracks."""

    def others(self, since: Optional[Dict[int, int]] = None) -> List[SharedTrack]:
        """Return the decided tracks of every other writer.

        With ``since`` ({writer: updated_ns}): of the writers named there only the rows updated at
        or after their stamp, of the others every row.
        """


@dataclass
class PersonGroup:
    """One person in an answer: the best-matching track first, then all of its tracks."""

    person_id: int
    best: TrackMatch
    track_ids: List[int] = field(default_factory=list)
    cameras: List[str] = field(default_factory=list)  # camera of each entry of track_ids
    first_seen_ns: int = 0
    last_seen_ns: int = 0


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


class PersonLinker:
    """Track -> person assignment from re-id features (see the module doc).

    Args:
        cfg: the ``reid`` section (threshold, margin, crops needed, averaging window); the
            object is shared, so runtime changes of those fields apply at once.
        window_s: tracks not seen for this long are forgotten (the gallery's window).
    """

    def __init__(self, cfg: Optional[ReidConfig] = None, *, window_s: float = 600.0):
        self.cfg = cfg or ReidConfig()
        self.window_ns = int(window_s * 1e9)
        self.model_id: Optional[str] = None
        self.tracks: Dict[Key, _Track] = {}
        self.members: Dict[int, List[Key]] = {}
        self.next_person = 1
        self.links = 0  # tracks joined to an earlier person, since start
        self.splits = 0
        self.shared: Optional[SharedPersons] = None
        self._marks: Dict[int, int] = {}  # per other writer: the newest ``updated_ns`` read
        self._full_at = float("-inf")  # monotonic time of the last full re-read
        self.synced_rows = 0  # shared rows read since start (full and incremental)

    def attach(self, store: SharedPersons) -> None:
        """Share persons through ``store`` from now on: publish this linker's decided tracks, read the others'."""
        if self.model_id is not None and store.model_id != self.model_id:
            raise ValueError(f"re-id model mismatch: the shared persons are {store.model_id!r}, this linker's "
                             f"{self.model_id!r}")
        self.shared = store
        self.model_id = store.model_id
        self.next_person = max(self.next_person, int(store.id_base) + 1)
        self._publish([k for k, t in self.tracks.items() if t.decided and not t.remote])
        self.sync()

    def sync(self, *, full: bool = False) -> int:
        """Bring the other writers' tracks up to date from the shared store; return the rows read.

        Incremental (rows each writer updated since the last read) except every
        ``FULL_SYNC_S`` seconds, or with ``full``: then the remote tracks are replaced by the
        store's current ones, which also drops the tracks other writers have forgotten.
        """
        if self.shared is None:
            return 0
        now = time.monotonic()
        if full or now - self._full_at >= FULL_SYNC_S:
            for key in [k for k, t in self.tracks.items() if t.remote]:
                self._forget(key)
            self._marks = {}
            rows = self.shared.others()
            self._full_at = now
        else:
            rows = self.shared.others(since=self._marks)
        for r in rows:
            self._apply_remote(r)
        self.synced_rows += len(rows)
        return len(rows)

    def _apply_remote(self, r: SharedTrack) -> None:
        key = (str(r.source_id), int(r.track_id))
        if r.writer:
            self._marks[int(r.writer)] = max(self._marks.get(int(r.writer), 0), int(r.updated_ns))
        t = self.tracks.get(key)
        if t is not None and not t.remote:
            return  # a camera name both robots use: this writer's own track wins
        if t is not None:
            self._forget(key)  # an update of a remote track (its person, span, mean)
        self.tracks[key] = _Track(int(r.first_ns), int(r.last_ns), _unit(np.asarray(r.mean, np.float32)),
                                  int(r.n), int(r.person), decided=True, remote=True)
        self.members.setdefault(int(r.person), []).append(key)

    def _publish(self, keys: Iterable[Key]) -> None:
        if self.shared is None:
            return
        rows = [SharedTrack(k[0], k[1], t.person, t.first_ns, t.last_ns, t.n, _unit(t.mean))
                for k in keys for t in (self.tracks.get(k),) if t is not None and t.decided and not t.remote]
        if rows:
            self.shared.put(rows)

    def _forget(self, key: Key) -> None:
        t = self.tracks.pop(key)
        members = self.members.get(t.person, [])
        if key in members:
            members.remove(key)
            if not members:
                self.members.pop(t.person, None)

    # ------------------------------------------------------------------ updates
    def _new_person(self, key: Key) -> int:
        pid = self.next_person
        self.next_person += 1
        self.members[pid] = [key]
        return pid

    def observe(self, source_id: str, track_ids: Sequence[int], stamp_ns: int, feats: np.ndarray,
                model_id: str) -> List[Key]:
        """Add one frame's re-id features (rows of ``feats``, one per track id).

        Returns:
            The tracks whose person changed in this call (joined or split off).

        Raises:
            ValueError: features of another re-id model than the first ones, or a shape mismatch.
        """
        feats = np.asarray(feats, np.float32)
        if feats.ndim != 2 or feats.shape[0] != len(track_ids):
            raise ValueError(f"re-id features must be ({len(track_ids)}, dim), got {feats.shape}")
        if self.model_id is None:
            self.model_id = model_id
        elif model_id != self.model_id:
            raise ValueError(f"re-id model mismatch: features of {model_id!r}, the persons were built from "
                             f"{self.model_id!r}")
        window = max(1, int(self.cfg.max_track_features))
        changed: List[Key] = []
        touched: List[Key] = []
        for tid, f in zip(track_ids, feats):
            if not np.isfinite(f).all() or not np.any(f):
                continue
            key = (str(source_id), int(tid))
            t = self.tracks.get(key)
            f = _unit(f.astype(np.float32))
            if t is not None and t.remote:  # another writer's track of the same name: this one is ours now
                self._forget(key)
                t = None
            if t is None:
                t = _Track(int(stamp_ns), int(stamp_ns), f.copy(), 1, 0)
                t.person = self._new_person(key)
                self.tracks[key] = t
            else:
                t.n += 1
                t.mean += (f - t.mean) / min(t.n, window)
                t.first_ns, t.last_ns = min(t.first_ns, int(stamp_ns)), max(t.last_ns, int(stamp_ns))
                changed += self._split_clashes(key, t)
            if not t.decided and t.n >= self.cfg.min_link_crops:
                t.decided = True
                self.sync()  # the other robots' persons as they are now
                target = self._best_person(key, t)
                if target is not None:
                    self._move(key, t, target)
                    t.joined = True
                    self.links += 1
                    changed.append(key)
            if t.decided:
                touched.append(key)
        self._publish(touched + [k for k in changed if k not in touched])
        return changed

    def _move(self, key: Key, t: _Track, person: int) -> None:
        old = self.members.get(t.person, [])
        if key in old:
            old.remove(key)
            if not old:
                self.members.pop(t.person, None)
        t.person = person
        self.members.setdefault(person, [])
        if key not in self.members[person]:
            self.members[person].append(key)

    def _split_clashes(self, key: Key, t: _Track) -> List[Key]:
        """Split joined tracks off a person that now shows two tracks at once in one camera."""
        if not self._clash(key, t, t.person):
            return []
        if t.joined:
            losers = [key]
        else:
            losers = [k for k in self.members.get(t.person, ()) if k != key and k[0] == key[0]
                      and self.tracks[k].joined and not self.tracks[k].remote and self._overlap(self.tracks[k], t)]
        for k in losers:
            lt = self.tracks[k]
            self._move(k, lt, self._new_person(k))
            lt.joined = False
            self.splits += 1
        return losers

    @staticmethod
    def _overlap(a: _Track, b: _Track) -> bool:
        return a.first_ns <= b.last_ns and b.first_ns <= a.last_ns

    def _clash(self, key: Key, t: _Track, person: int) -> bool:
        """Return True when another track of ``person`` was seen in ``key``'s camera during ``t``'s span."""
        for other in self.members.get(person, ()):
            if other == key or other[0] != key[0]:
                continue
            if self._overlap(self.tracks[other], t):
                return True
        return False

    def person_feature(self, person: int) -> Optional[np.ndarray]:
        """Return the unit mean of the decided tracks of a person (None when none is decided)."""
        means = [_unit(self.tracks[k].mean) for k in self.members.get(person, ()) if self.tracks[k].decided]
        return _unit(np.sum(means, axis=0)) if means else None

    def _best_person(self, key: Key, t: _Track) -> Optional[int]:
        cands = [p for p in self.members if p != t.person]
        feats, ids = [], []
        for p in cands:
            v = self.person_feature(p)
            if v is not None:
                feats.append(v)
                ids.append(p)
        if not ids:
            return None
        sims = np.stack(feats) @ _unit(t.mean)
        order = np.argsort(-sims)
        for rank, i in enumerate(order):
            if sims[i] < self.cfg.link_threshold:
                return None
            if self._clash(key, t, ids[i]):
                continue  # never two of one person at once in one camera; the next candidate may do
            runner = max((float(sims[j]) for j in order[rank + 1:] if not self._clash(key, t, ids[j])), default=-2.0)
            return ids[i] if sims[i] - runner >= self.cfg.link_margin else None
        return None

    def evict(self, now_ns: int) -> int:
        """Forget tracks last seen before ``now_ns - window``; return how many."""
        cutoff = int(now_ns) - self.window_ns
        old = [k for k, t in self.tracks.items() if t.last_ns < cutoff]
        own = [k for k in old if not self.tracks[k].remote]
        for key in old:
            self._forget(key)
        if self.shared is not None and own:
            self.shared.remove(own)
        return len(old)

    # ------------------------------------------------------------------ reads
    def person_of(self, source_id: str, track_id: int) -> int:
        """Return the person id of a track, -1 when the track has no re-id features."""
        t = self.tracks.get((str(source_id), int(track_id)))
        return t.person if t is not None else -1

    def tracks_of(self, person: int) -> List[Key]:
        """Return the (camera, track id) of a person's tracks, oldest first."""
        return sorted(self.members.get(int(person), ()), key=lambda k: self.tracks[k].first_ns)

    def track_feature(self, source_id: str, track_id: int) -> Optional[np.ndarray]:
        """Return the unit mean re-id feature of a track (None when unknown)."""
        t = self.tracks.get((str(source_id), int(track_id)))
        return _unit(t.mean) if t is not None else None

    def find_track(self, track_id: int, source_id: str = "") -> Optional[Key]:
        """Return the key of a track id (in ``source_id``, or the newest of that id in any camera)."""
        if source_id:
            key = (source_id, int(track_id))
            return key if key in self.tracks else None
        keys = [k for k in self.tracks if k[1] == int(track_id)]
        return max(keys, key=lambda k: self.tracks[k].last_ns) if keys else None

    def similar(self, query: np.ndarray, top_k: int, *, exclude_person: int = -1,
                exclude: Sequence[Key] = (), keep: Optional[Callable[[Key], bool]] = None) -> List[Tuple[Key, float]]:
        """Tracks ranked by the cosine of their mean feature to ``query`` (``exclude`` keys and person left out).

        ``keep``, when given, says which tracks may be answered (e.g. those still in the gallery): the others are
        left out before the top ``top_k`` are taken, so they never shorten the answer.
        """
        skip = set(exclude)
        keys = [k for k, t in self.tracks.items() if t.person != exclude_person and k not in skip
                and (keep is None or keep(k))]
        if not keys:
            return []
        means = np.stack([_unit(self.tracks[k].mean) for k in keys])
        sims = means @ _unit(np.asarray(query, np.float32).reshape(-1))
        order = np.argsort(-sims, kind="stable")[:max(1, int(top_k))]
        return [(keys[i], float(sims[i])) for i in order]

    def group(self, matches: Iterable[TrackMatch], top_k: int) -> List[PersonGroup]:
        """Fold track matches (best first) into persons: one entry per person, its best track first."""
        out: List[PersonGroup] = []
        seen: Dict[int, PersonGroup] = {}
        for m in matches:
            pid = self.person_of(m.source_id, m.track_id)
            if pid >= 0 and pid in seen:
                continue
            if len(out) >= top_k:
                break
            keys = self.tracks_of(pid) if pid >= 0 else [(m.source_id, int(m.track_id))]
            if (m.source_id, int(m.track_id)) not in keys:
                keys = [(m.source_id, int(m.track_id))] + keys
            keys.remove((m.source_id, int(m.track_id)))
            keys.insert(0, (m.source_id, int(m.track_id)))
            spans = [(self.tracks[k].first_ns, self.tracks[k].last_ns) for k in keys if k in self.tracks]
            first = min([m.first_seen_ns] + [s[0] for s in spans])
            last = max([m.last_seen_ns] + [s[1] for s in spans])
            g = PersonGroup(pid, m, [k[1] for k in keys], [k[0] for k in keys], first, last)
            out.append(g)
            if pid >= 0:
                seen[pid] = g
        return out

    def stats(self) -> Dict[str, int]:
        """Counters for diagnostics."""
        return {"persons": len(self.members), "person_tracks": len(self.tracks), "person_links": self.links,
                "person_splits": self.splits, "person_tracks_shared": sum(t.remote for t in self.tracks.values()),
                "person_rows_synced": self.synced_rows}

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the linker atomically to an ``.npz`` (this writer's tracks; shared ones stay in their store)."""
        keys = [k for k, t in self.tracks.items() if not t.remote]
        ts = [self.tracks[k] for k in keys]
        dim = ts[0].mean.shape[0] if ts else 0
        arrays = dict(
            format=np.array(FORMAT), model_id=np.array(self.model_id or ""), next_person=np.array(self.next_person),
            counters=np.array([self.links, self.splits], np.int64),
            sources=np.array([k[0] for k in keys], dtype=str), track_ids=np.array([k[1] for k in keys], np.int64),
            first=np.array([t.first_ns for t in ts], np.int64), last=np.array([t.last_ns for t in ts], np.int64),
            n=np.array([t.n for t in ts], np.int64), person=np.array([t.person for t in ts], np.int64),
            flags=np.array([[t.decided, t.joined] for t in ts], bool).reshape(-1, 2),
            means=np.stack([t.mean for t in ts]).astype(np.float32) if ts else np.zeros((0, dim), np.float32))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".npz", dir=str(path.parent))
        os.close(fd)
        try:
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, cfg: Optional[ReidConfig] = None, *, window_s: float = 600.0
             ) -> "PersonLinker":
        """Read a linker written by :meth:`save`; ValueError (one line) when the file is not one."""
        try:
            with np.load(str(path), allow_pickle=False) as z:
                if int(z["format"]) != FORMAT:
                    raise ValueError(f"{path}: person file format {int(z['format'])}, expected {FORMAT}")
                d = {k: z[k] for k in z.files}
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a person file ({exc})") from None
        out = cls(cfg, window_s=window_s)
        out.model_id = str(d["model_id"]) or None
        out.next_person = int(d["next_person"])
        out.links, out.splits = (int(v) for v in d["counters"])
        for i, (src, tid) in enumerate(zip(d["sources"], d["track_ids"])):
            key = (str(src), int(tid))
            t = _Track(int(d["first"][i]), int(d["last"][i]), d["means"][i].astype(np.float32), int(d["n"][i]),
                       int(d["person"][i]), bool(d["flags"][i][0]), bool(d["flags"][i][1]))
            out.tracks[key] = t
            out.members.setdefault(t.person, []).append(key)
        return out


def persons_path(snapshot_path: str) -> str:
    """Return where the persons of a gallery snapshot (or Milvus Lite file) are kept: ``<path>.persons.npz``."""
    return f"{snapshot_path}.persons.npz"


def search_persons(gallery, linker: Optional[PersonLinker], query: np.ndarray, top_k: int, *, by_track: bool = False,
                   **filters) -> Tuple[List[TrackMatch], Optional[List[PersonGroup]]]:
    """Search a gallery and fold the track matches into persons (what ``/query_person`` and ``run`` answer).

    By person (the default, when ``linker`` knows any track): enough tracks are searched that
    ``top_k`` persons remain after a person's tracks are folded into one entry; the shared
    persons (other robots) are read first. ``by_track`` (or no linker): the ``top_k`` tracks.

    Returns:
        (track matches, person groups); the groups are None when the answer is by track.
    """
    by_person = not by_track and linker is not None and bool(linker.tracks)
    k = min(max(top_k, top_k * 5), max(top_k, gallery.num_tracks)) if by_person else top_k
    matches = gallery.search(query, k, **filters)
    if not by_person:
        return matches, None
    linker.sync()
    return matches, linker.group(matches, top_k)
