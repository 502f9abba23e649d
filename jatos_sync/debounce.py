"""Debouncing: file-system changes → batches of paths ready for a pass. Pure: no clock,
no threads, no I/O; times are given by the caller (the worker's monotonic clock).

A write that ended (the file was closed after writing, or renamed into place: every
editor's save) is ready at once; other changes wait until the path has been quiet for the
debounce time, so a writer that keeps a file open, a polling watcher and a burst of events
become one look at each path. Deletions always wait the longer deletion delay, so a rebuild
or a branch switch never takes a file away from a running study only to bring it back.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from jatos_sync.model import RelPath


@dataclass(frozen=True)
class Change:
    """What the watcher saw, as a hint: the pass looks at the path itself.

    touch: `path` (a file, or a directory: its whole subtree) may have changed or appeared;
    done: the file `path` was closed after a write, or renamed into place: complete;
    gone: `path` disappeared (deleted or moved away); rescan: events were lost, look at
    everything; folder_gone: the watched folder itself was deleted.
    """

    kind: Literal["touch", "done", "gone", "rescan", "folder_gone"]
    path: RelPath | None = None
    is_dir: bool = False


@dataclass(frozen=True)
class Batch:
    """What is ready for one pass.

    `dirty`: paths (files or directories) to look at again; `hold`: paths (files or
    directories) missing locally whose deletion must still wait; `full_local`: look at the
    whole folder (a full pass) instead of only `dirty`.
    """

    dirty: frozenset[RelPath] = frozenset()
    hold: frozenset[RelPath] = frozenset()
    full_local: bool = False

    def __bool__(self) -> bool:
        return self.full_local or bool(self.dirty)


class Debouncer:
    """Turns a stream of changes into batches, with explicit times (no clock inside).

    - A touched path is ready `debounce_s` after its last event: a burst of writes, or an
      editor's write-rename-delete dance, becomes one look at the path, once it is quiet.
      A file whose write has ended (`settled`: closed after writing, or renamed into place)
      is ready at once: the upload is the only wait left.
    - A path that disappeared is ready only after `delete_delay_s` of staying gone; until
      then it is in `hold`, so no pass deletes it. If it reappears (a touch of the same
      file) its deletion is cancelled and it is simply looked at again; the pass then sees
      the server already holds that content and sends nothing. A directory that reappears
      does not cancel the wait for the files it held: they must come back one by one.
    - A rescan (lost events, periodic reconcile, server back) becomes a batch with
      `full_local` once the folder has been quiet for the longer of both delays, so a full
      pass never runs in the middle of a rebuild whose deletions it cannot tell apart from
      real ones. That batch takes every pending path with it.

    Paths handed out in a batch stay pending until `finish()`; failed ones can be queued
    again there. `pending()` and `oldest_pending_since()` are for the status file.

    Times come from one monotonic clock: `now` never goes back between calls. Deadlines
    live in a heap, so a burst of thousands of events costs O(log n) per event, not O(n).
    """

    def __init__(self, *, debounce_s: float, delete_delay_s: float) -> None:
        self.debounce_s = debounce_s
        self.delete_delay_s = delete_delay_s
        self._dirty: dict[RelPath, float] = {}  # path -> when it is ready
        self._gone: dict[RelPath, float] = {}  # path -> when its deletion may happen
        # (when, sequence, is a deletion, path); entries superseded in the dicts are stale.
        self._timeline: list[tuple[float, int, bool, RelPath]] = []
        self._sequence = itertools.count()
        # path -> its first event while pending; insertion order is time order.
        self._since: dict[RelPath, float] = {}
        self._rescan_at: float | None = None
        self._last_event = -math.inf

    def touch(
        self, path: RelPath, now: float, *, is_dir: bool = False, settled: bool = False
    ) -> None:
        """`path` was created, written or moved here; `settled`: its write has ended."""
        self._note(path, now)
        self._schedule(path, now if settled else now + self.debounce_s, gone=False)
        if not is_dir:
            self._gone.pop(path, None)

    def gone(self, path: RelPath, now: float) -> None:
        """`path` was deleted or moved away."""
        self._note(path, now)
        self._dirty.pop(path, None)
        self._schedule(path, now + self.delete_delay_s, gone=True)

    def rescan(self, now: float) -> None:
        """Ask for a full look at the folder (kept at the earliest request)."""
        if self._rescan_at is None:
            self._rescan_at = now

    def due(self, now: float, *, full_only: bool = False) -> Batch:
        """Take what is ready at `now`. With `full_only`, only a due rescan is taken."""
        if self._rescan_at is not None and now >= self._rescan_due():
            taken = frozenset(self._dirty) | frozenset(self._gone)
            self._dirty.clear()
            self._gone.clear()
            self._timeline.clear()
            self._rescan_at = None
            return Batch(dirty=taken, full_local=True)
        if full_only:
            return Batch()
        ready: set[RelPath] = set()
        while self._timeline and self._timeline[0][0] <= now:
            entry = heapq.heappop(self._timeline)
            if self._current(entry):
                _, _, gone, path = entry
                del (self._gone if gone else self._dirty)[path]
                ready.add(path)
        if not ready:
            return Batch()
        return Batch(dirty=frozenset(ready), hold=frozenset(self._gone))

    def finish(
        self, batch: Batch, *, now: float, retry: Mapping[RelPath, float] | None = None
    ) -> None:
        """The pass for `batch` is over at `now`. `retry`: paths to look at again, and when.

        A path touched again during the pass keeps its own (sooner) time.
        """
        for path, at in (retry or {}).items():
            if path not in self._dirty:
                self._schedule(path, at, gone=False)
            self._since.setdefault(path, now)
        for path in batch.dirty:
            if path not in self._dirty and path not in self._gone:
                self._since.pop(path, None)

    def reset(self) -> None:
        """Forget everything pending (the folder itself went away)."""
        self._dirty.clear()
        self._gone.clear()
        self._timeline.clear()
        self._since.clear()
        self._rescan_at = None

    def pending(self) -> int:
        """How many paths wait for a pass or are in one."""
        return len(self._since)

    def oldest_pending_since(self) -> float | None:
        return next(iter(self._since.values()), None)

    def next_deadline(self, *, full_only: bool = False) -> float | None:
        """When `due()` (with the same `full_only`) will next have something, possibly
        already past; None if nothing is pending."""
        times = []
        if not full_only:
            while self._timeline and not self._current(self._timeline[0]):
                heapq.heappop(self._timeline)
            if self._timeline:
                times.append(self._timeline[0][0])
        if self._rescan_at is not None:
            times.append(self._rescan_due())
        return min(times, default=None)

    def _schedule(self, path: RelPath, at: float, *, gone: bool) -> None:
        (self._gone if gone else self._dirty)[path] = at
        heapq.heappush(self._timeline, (at, next(self._sequence), gone, path))

    def _current(self, entry: tuple[float, int, bool, RelPath]) -> bool:
        at, _, gone, path = entry
        return (self._gone if gone else self._dirty).get(path) == at

    def _note(self, path: RelPath, now: float) -> None:
        self._since.setdefault(path, now)
        self._last_event = max(self._last_event, now)

    def _rescan_due(self) -> float:
        assert self._rescan_at is not None
        quiet_s = max(self.debounce_s, self.delete_delay_s)
        return max(self._rescan_at + self.debounce_s, self._last_event + quiet_s)
