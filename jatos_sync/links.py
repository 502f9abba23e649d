"""Where the folder's symbolic links lead, and which of its files have other names.

Owns `LinkMap` and `map_links`: a walk of the mapping folder that follows links as the scan
does (wherever they lead; not into loops, ignored entries or names that are not UTF-8) and
notes, for the watcher, where the scan meets each linked directory and file and which
regular files are hard links (more than one name). The watcher (`watch.py`) watches the
targets outside the folder, reports each event at every folder path the scan lists it
under (`LinkMap.relatives`), and re-checks hard-linked files by their `signature`.

Must not: read file contents, import watchdog, or decide what to sync.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field

from jatos_sync.ignore import IgnoreRules


@dataclass(frozen=True)
class LinkMap:
    """Where the scan meets real directories and files through symbolic links, and which
    files have other names (hard links). Paths in the folder are "/"-separated strings.

    `dirs`: a real directory (symlinks resolved) -> the folder paths at which the scan lists
    its content ("" for the folder itself); `files`: the real path of a linked file -> the
    folder paths of its links; `links`: the folder paths of the links followed; `hard`: the
    folder path of a regular file with more than one name -> the path to stat it by.
    """

    root: str
    dirs: Mapping[str, tuple[str, ...]]
    files: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    links: frozenset[str] = frozenset()
    hard: Mapping[str, str] = field(default_factory=dict)

    def inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root.rstrip(os.sep) + os.sep)

    def relatives(self, real: str) -> list[str]:
        """Every folder path at which the scan lists the real path `real` ("" for the folder
        itself). A path inside the folder is looked up through the folder's own directories
        only: a link to an ancestor of the folder does not make its files appear twice."""
        found = list(self.files.get(real, ()))
        inside = self.inside(real)
        path, tail = real, ""
        while True:
            for prefix in self.dirs.get(path, ()):
                found.append(f"{prefix}/{tail}" if prefix and tail else prefix or tail)
            parent = os.path.dirname(path)
            if (inside and path == self.root) or parent == path:
                break
            tail = f"{os.path.basename(path)}/{tail}" if tail else os.path.basename(path)
            path = parent
        return list(dict.fromkeys(found))

    def watch_roots(self) -> dict[str, bool]:
        """The real paths outside the folder to watch, each with whether to watch it
        recursively: the outermost linked directories, and the directories of linked files
        that none of those holds."""
        chosen: list[str] = []
        for path in sorted(p for p in self.dirs if not self.inside(p)):
            if not any(_holds(outer, path) for outer in chosen):
                chosen.append(path)
        roots = dict.fromkeys(chosen, True)
        for target in self.files:
            parent = os.path.dirname(target)
            if not self.inside(target) and not any(_holds(outer, target) for outer in chosen):
                roots.setdefault(parent, False)
        return roots

    def leading_to(self, real: str) -> list[str]:
        """The folder paths of the links whose target is `real` or lies in it."""
        found = [rel for path, rels in self.dirs.items() if _holds(real, path) for rel in rels]
        found += [rel for path, rels in self.files.items() if _holds(real, path) for rel in rels]
        return sorted(rel for rel in found if rel in self.links)


def _holds(outer: str, path: str) -> bool:
    return path == outer or path.startswith(outer.rstrip(os.sep) + os.sep)


class LinkCollector:
    """Builds a `LinkMap` from what a walk meets: the scan's own walk (`scan_folder`), or
    `map_links`'s. `root` is the folder's real path."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._dirs: dict[str, list[str]] = {root: [""]}
        self._files: dict[str, list[str]] = {}
        self._links: set[str] = set()
        self._hard: dict[str, str] = {}

    def note(self, rel: str, os_path: str, st: os.stat_result, *, is_link: bool) -> str:
        """A directory or regular file the walk lists at `rel` (not ignored, not a loop),
        found at `os_path`; `st` with links followed, `is_link` whether it is a link.
        Returns where it really is (`os_path` unless it is a link)."""
        real = os.path.realpath(os_path) if is_link else os_path
        if stat.S_ISDIR(st.st_mode):
            if is_link:
                self._dirs.setdefault(real, []).append(rel)
                self._links.add(rel)
        elif stat.S_ISREG(st.st_mode):
            if is_link:
                self._files.setdefault(real, []).append(rel)
                self._links.add(rel)
            if st.st_nlink > 1:
                self._hard[rel] = real
        return real

    def result(self) -> LinkMap:
        return LinkMap(
            root=self.root,
            dirs={path: tuple(rels) for path, rels in self._dirs.items()},
            files={path: tuple(rels) for path, rels in self._files.items()},
            links=frozenset(self._links),
            hard=dict(self._hard),
        )


def map_links(root: str, rules: IgnoreRules) -> LinkMap:
    """Walk the folder `root` (its real path) as the scan does — links followed, wherever
    they lead; ignored entries, loops and names that are not UTF-8 not — and note where
    the links lead and which regular files have other names. What cannot be read is left
    out: the scan reports it. (A full scan notes the same on its own walk, see
    `scan_folder`; this walk is for the watcher between scans.)"""
    try:
        root_st = os.stat(root)
    except OSError:
        return LinkMap(root=root, dirs={root: ("",)})
    found = LinkCollector(root)
    stack = [(root, "", frozenset({(root_st.st_dev, root_st.st_ino)}))]
    while stack:
        real_dir, prefix, ancestors = stack.pop()
        try:
            with os.scandir(real_dir) as iterator:
                entries = list(iterator)
        except OSError:
            continue
        for entry in entries:
            rel = prefix + entry.name
            try:
                is_link = entry.is_symlink()
                st = entry.stat()
                rel.encode("utf-8")
            except (OSError, UnicodeEncodeError):
                continue  # broken, a loop, unreadable or misnamed: the scan reports it
            is_dir = stat.S_ISDIR(st.st_mode)
            if rules.match_entry(rel, is_dir=is_dir):
                continue
            if is_dir:
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    continue  # a loop: the scan does not follow it either
            real = found.note(rel, entry.path, st, is_link=is_link)
            if is_dir:
                stack.append((real, rel + "/", ancestors | {key}))
    return found.result()


def signature(path: str) -> tuple[int, int, int, int] | None:
    """What changes when a file's content changes through any of its names."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
