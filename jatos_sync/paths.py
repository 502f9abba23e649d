"""Where paths lie: the one place that decides "inside" and "outside", and that turns a
relative path from the server into a local path.

Two kinds of paths meet in jatos-sync. Local paths (the synced folder, the state folder,
the token file, the configuration) are compared *resolved*, symlinks followed, because a
path spelled through a symlink is the same place as its target (docs/safety.md, rules 9
and 11). Relative paths that come from the server (a listing, a `.jas`, a zip entry) are
untrusted: `server_path` validates one where it enters, and `contained` proves that a local
path built from one stays inside its root (docs/safety.md, rule 10).

Must not: read or write files, or know about the server or the configuration.
"""

from __future__ import annotations

import os
from pathlib import Path

from jatos_sync.errors import UnsafePathError
from jatos_sync.model import RelPath


def resolved(path: Path) -> Path:
    """`path` made absolute with every symlink that exists followed (`os.path.realpath`)."""
    return Path(os.path.realpath(path))


def is_inside(path: Path, root: Path) -> bool:
    """Whether `path` is `root` or lies below it, both compared resolved."""
    inner, outer = resolved(path), resolved(root)
    return inner == outer or outer in inner.parents


def how_inside(inner: Path, outer: Path) -> str:
    """How `inner` lies inside `outer` when their spelling does not show it: " (through a
    symbolic link: … is inside …)", else "" (for messages after an `is_inside`)."""
    spelled = (Path(os.path.abspath(inner)), Path(os.path.abspath(outer)))
    if spelled[0] == spelled[1] or spelled[1] in spelled[0].parents:
        return ""
    return f" (through a symbolic link: {resolved(inner)} is inside {resolved(outer)})"


def server_path(text: object) -> RelPath:
    """A relative path the server sent (or an archive holds), validated once, where it
    enters; raises `UnsafePathError` for anything that is not a plain relative path.

    One trailing `/` is dropped (directories in 3.8-3.10.1 listings, docs/jatos-api.md §3.4).
    Refused: non-text, empty, absolute (on Windows also anything with a drive colon),
    `.`, `..` or empty segments, NUL and backslash (a separator on Windows, and never in a
    name JATOS 3.10 accepts).
    """
    if not isinstance(text, str):
        raise UnsafePathError(f"not a path: {type(text).__name__}")
    raw = text[:-1] if text.endswith("/") else text
    if not raw:
        raise UnsafePathError("an empty path")
    if "\x00" in raw or "\\" in raw:
        raise UnsafePathError(f"{_shown(raw)}: contains a NUL or a backslash")
    if raw.startswith("/") or (os.name == "nt" and ":" in raw):  # "C:x" is a drive there
        raise UnsafePathError(f"{_shown(raw)}: an absolute path")
    if "//" in raw or raw.endswith("/") or ("." in raw and _dot_segment(raw)):
        raise UnsafePathError(f"{_shown(raw)}: has an empty, '.' or '..' segment")
    return RelPath(raw)


def _dot_segment(raw: str) -> bool:
    """Whether a segment of `raw` is "." or ".." (without splitting: every file name of a
    listing has a dot, and this runs for each)."""
    return (
        raw in (".", "..")
        or raw.startswith(("./", "../"))
        or raw.endswith(("/.", "/.."))
        or "/./" in raw
        or "/../" in raw
    )


def _shown(raw: str) -> str:
    return raw.encode("unicode_escape").decode("ascii")[:200]


def contained(root: Path, rel: RelPath) -> Path:
    """`root` joined with `rel`, proven to stay inside `root` with symlinks followed.

    The parent folder of the result, resolved, must be `root` (resolved) or lie below it:
    files are written by renaming into that folder, which never follows a symlink at the
    final name itself. Raises `UnsafePathError` otherwise.
    """
    parts = rel.parts
    if not parts or rel.is_absolute() or any(p in ("", ".", "..") or os.sep in p for p in parts):
        raise UnsafePathError(f"{rel}: not a plain relative path")
    target = root.joinpath(*parts)
    if not is_inside(target.parent, root):
        raise UnsafePathError(
            f"{rel}: leads outside {root} (through a symbolic link); nothing was written there"
        )
    return target
