"""Which local paths are never synced: built-in defaults plus the user's patterns.

Owns the ignore rules shared by the scan (`scan.py`), the watcher and the planner: the
built-in patterns (version-control folders, OS junk, editor artefacts, secret files,
PsychoPy participant data), the optional `<folder>/.jatosignore` file and the patterns of
the mapping's configuration, all in gitignore syntax (compiled with pathspec's
`GitIgnoreSpec`). Later patterns win, as in git: built-ins first, then the PsychoPy rule,
then `.jatosignore`, then the mapping's patterns, so a user may re-include a built-in with
`!pattern`. Only the server's own temp names (`SERVER_TEMP_RE`) are ignored
unconditionally.

The PsychoPy rule is the one rule that depends on the folder's content: a `data` folder is
participant data when the folder holding it also holds a `*.psyexp`, at any depth
(docs/safety.md, rule 9). `IgnoreRules` decides that itself, lazily, with one listing per
directory that holds a `data` folder, cached while that directory is unchanged; so the
scan, the watcher and the planner agree without knowing about PsychoPy.

A generated `.jatosignore` may hold thousands of lines. pathspec's fast RE2 backend puts
all patterns into one automaton, and RE2 refuses to build one beyond its memory budget
(about 3,000 typical lines); the rules are then split over several automata
(`_SplitSpec`), which matches exactly as one would and stays fast (benchmarks/bench_ignore.py).

Must not: walk the folder (beyond listing a directory that holds a `data` folder), read
file contents other than `.jatosignore`, or know anything about the server.
"""

from __future__ import annotations

import functools
import os
import re
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from pathspec import GitIgnoreSpec
from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern

from jatos_sync.credentials import TOKEN_PREFIX
from jatos_sync.errors import ConfigError
from jatos_sync.model import RelPath

IGNORE_FILE_NAME = ".jatosignore"

# vim probes whether it may create files in a directory by creating and deleting a file
# named "4913"; if that name is taken it adds 123 and tries again (vim's bufwrite.c:
# `for (i = 4913; ; i += 123)`). Only these names are ignored, not every all-digit name;
# ten steps cover any realistic collision chain.
_VIM_PROBE_NAMES = tuple(str(4913 + k * 123) for k in range(10))

BUILTIN_PATTERNS: tuple[str, ...] = (
    # Version control metadata: never experiment assets, often large, may hold secrets.
    # `.git` without a trailing slash also covers the `.git` *file* of worktrees/submodules.
    ".git",
    ".hg/",
    ".svn/",
    ".bzr/",
    "CVS/",
    # Operating-system junk: Finder metadata and AppleDouble files (macOS), thumbnail
    # caches and folder settings (Windows), volume indexes and trash folders.
    ".DS_Store",
    "._*",
    "Thumbs.db",
    "ehthumbs.db",
    "desktop.ini",
    ".Spotlight-V100/",
    ".Trashes/",
    ".fseventsd/",
    ".TemporaryItems/",
    "$RECYCLE.BIN/",
    ".Trash-*/",
    # Network/FUSE file systems keep a deleted-but-open file as `.nfsXXXX` /
    # `.fuse_hiddenXXXX` until it is closed (folders on NFS, SMB or WSL's 9p are common).
    ".nfs*",
    ".fuse_hidden*",
    # vim: swap files (`.name.swp`, then .swo, .swn … on collisions; `.swx` is vim's probe
    # for a writable swap directory) and the write probe "4913" (+123 …), see above.
    "*.swp",
    "*.swo",
    "*.swx",
    ".*.sw?",
    *_VIM_PROBE_NAMES,
    # Backups of vim, emacs, nano and others (`file~`, emacs `file.~1~`, vim `.file.un~`).
    "*~",
    # emacs: auto-save files `#file#` and lock links `.#file` (dangling symlinks).
    r"\#*#",  # a leading "#" would start a comment
    ".#*",
    # JetBrains IDEs "safe write": write `name___jb_tmp___`, rename the old file to
    # `name___jb_old___`, then rename the new one into place.
    "*___jb_tmp___",
    "*___jb_old___",
    # Kate swap files and GLib/GNOME (gedit) atomic-save temp files.
    "*.kate-swp",
    ".goutputstream-*",
    # Editor/IDE project settings: editor configuration, never an asset a study serves.
    ".idea/",
    ".vscode/",
    # Office lock files: LibreOffice `.~lock.name#`, Microsoft Office `~$name`.
    ".~lock.*#",
    "~$*",
    # Unfinished browser downloads (Chrome, Firefox, Safari).
    "*.crdownload",
    "*.part",
    "*.download",
    # This tool's own ignore file and copies of its configuration (`init --force` keeps
    # the old file as `jatos-sync.yaml.bak`): configuration, not study assets.
    IGNORE_FILE_NAME,
    "jatos-sync.yaml*",
    "jatos-sync.yml*",
    # Secrets. Study assets are served to every participant (docs/safety.md, rule 9), and
    # none of these is a file a web experiment serves. Environment files of build tools
    # (Vite, npm scripts) and of direnv (`.envrc`, often `export JATOS_TOKEN=…`).
    ".env",
    ".env.*",
    ".envrc",
    # Credentials of command-line tools: curl/ftp/git (`.netrc`, `_netrc` on Windows),
    # git's credential store, npm/yarn, PyPI, PostgreSQL, MySQL, Docker; Apache passwords.
    ".netrc",
    "_netrc",
    ".git-credentials",
    ".npmrc",
    ".yarnrc.yml",
    ".pypirc",
    ".pgpass",
    ".my.cnf",
    ".docker/",
    ".htpasswd",
    # SSH: the whole folder, and private keys kept elsewhere (OpenSSH's default names).
    ".ssh/",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ecdsa_sk",
    "id_ed25519",
    "id_ed25519_sk",
    # Keys and certificate stores: PEM, PKCS#12, PuTTY, Java key stores, KeePass.
    "*.pem",
    "*.p12",
    "*.pfx",
    "*.ppk",
    "*.jks",
    "*.keystore",
    "*.kdbx",
    # Cloud SDK credentials: AWS and Azure CLI folders, Google Cloud's application
    # default credentials and OAuth client secrets, Firebase's service-account key.
    ".aws/",
    ".azure/",
    "application_default_credentials.json",
    "client_secret*.json",
    "credentials.json",
    "serviceAccountKey.json",
    "service-account*.json",
    # Shell and REPL histories (`.bash_history`, `.python_history` …) hold typed secrets.
    ".*_history",
    # Python byte-code caches (e.g. from a PsychoPy or helper script run in the folder).
    "__pycache__/",
    "*.pyc",
    # PsychoPy result files hold participant data and must never be uploaded
    # (docs/safety.md, rule 9); see also PSYCHOPY_DATA_DIR.
    "*.psydat",
)

# PsychoPy writes participant data into a folder `data/` next to the experiment file
# (`*.psyexp`), wherever that lies in the synced folder. A `data` folder (any letter case,
# for case-insensitive file systems) is ignored when its parent holds a `*.psyexp`; only
# then, because in other experiments `data/` is an ordinary stimulus folder. The rule sits
# after the built-ins, so a user who really wants it synced can re-include it with
# `!/data/` or `!sub/data/` in `.jatosignore` or the mapping's `ignore:`.
PSYCHOPY_DATA_DIR = "data"
PSYCHOPY_SUFFIX = ".psyexp"

# A directory listing is cached while the directory's mtime is unchanged, but not while that
# mtime is this recent: a file created within the same timestamp tick as the listing would
# not change it ("racy git"). 2 s covers the coarsest common granularity (FAT).
_RACY_WINDOW_NS = 2_000_000_000

# Since 3.10.3, JATOS writes an upload that crosses file stores to a hidden sibling
# `.<name>.tmp-<uuid>` first; it may show up in a listing or remain after a crash
# (docs/jatos-api.md §9.6). Never sync such a name, in either direction; not overridable.
SERVER_TEMP_RE = re.compile(r"^\..+\.tmp-[0-9a-f-]{36}$")

# Patterns per automaton. RE2 refuses a set beyond its memory budget: about 4,400 plain
# paths or 2,900 globs of ~40 characters. A chunk that still fails is halved.
CHUNK_PATTERNS = 1000
_PATTERN_CHARS = re.compile(r"([\\*?\[\]!# ])")


def is_server_temp(path: RelPath | str) -> bool:
    """Whether the base name of `path` is one of JATOS's own upload temp names
    (docs/jatos-api.md §9.6)."""
    name = path.name if isinstance(path, RelPath) else path.rsplit("/", 1)[-1]
    return SERVER_TEMP_RE.match(name) is not None


def literal_pattern(name: str) -> str:
    """An anchored gitignore pattern for exactly the path `name` (relative to the folder):
    every character with a meaning in a pattern (`*?[]\\!#` and a space, which a trailing
    one loses) escaped."""
    return "/" + _PATTERN_CHARS.sub(r"\\\1", name)


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` is not a valid gitignore pattern, or None when it is.

    For validation where the pattern is written (the configuration, `.jatosignore`), so that
    a bad pattern is reported with its file, line and key; never with a token in it.
    """
    if "\n" in pattern or "\r" in pattern or "\x00" in pattern:
        return "a pattern is one line" if "\x00" not in pattern else "it contains a NUL character"
    try:
        with warnings.catch_warnings():
            # `re` warns (FutureWarning) about constructs pathspec cannot translate, such as
            # the POSIX class "[[:alpha:]]"; treat those as errors, but do not let a library
            # deprecation notice turn every pattern into one.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("error", FutureWarning)
            # Parsing only: whether a pattern is valid must not depend on the limits of the
            # backend that matches many patterns at once.
            _parsed(pattern)
    except Exception as exc:  # pathspec raises ValueError, re.error and others for bad input
        reason = str(exc).strip() or type(exc).__name__
        if isinstance(exc, FutureWarning):
            reason = "it uses a construct pathspec cannot match, such as [[:alpha:]]"
        elif pattern.endswith("\\") and not pattern.endswith("\\\\"):
            reason = "it ends with a lone backslash"
        elif pattern.strip() == "!":
            reason = "'!' needs a pattern after it"
        return reason if TOKEN_PREFIX not in reason else "pathspec cannot read it"
    return None


@functools.lru_cache(maxsize=1 << 15)
def _parsed(line: str) -> GitIgnoreSpecPattern:
    """One gitignore line as pathspec parses it (with a compiled Python regex).

    Cached: a generated `.jatosignore` of 10,000 lines costs about a second to parse, and it
    is read again for every full pass and by the watcher.
    """
    return GitIgnoreSpecPattern(line)


class IgnoreRules:
    """Compiled ignore rules for one mapping folder.

    `is_ignored` takes a path relative to the folder. As in git, a path below an ignored
    directory is ignored, whatever later patterns say about the path itself.

    `patterns` are compiled in order; with a `folder`, the PsychoPy rule follows them and
    `overrides` (the user's patterns) come last. Without a folder there is no PsychoPy rule:
    nothing to look at.
    """

    def __init__(
        self,
        patterns: Sequence[str] = BUILTIN_PATTERNS,
        *,
        folder: Path | None = None,
        overrides: Sequence[str] = (),
        clock_ns: Callable[[], int] = time.time_ns,
        chunk_size: int = CHUNK_PATTERNS,
    ) -> None:
        # Validated by the callers (`for_folder` with file and line); compile once.
        self.patterns: tuple[str, ...] = (*patterns, *overrides)
        self.folder = folder
        self._chunk_size = chunk_size
        self._spec = _SplitSpec(self.patterns, chunk_size=chunk_size)
        self._overrides = tuple(overrides)
        self._override_spec: _SplitSpec | None = None  # compiled when first needed
        self._clock_ns = clock_ns
        # directory (relative, "" for the folder) -> (dev, ino, mtime_ns, holds a *.psyexp)
        self._psyexp_dirs: dict[str, tuple[int, int, int, bool]] = {}

    @classmethod
    def for_folder(cls, folder: Path, patterns: Sequence[str] = ()) -> IgnoreRules:
        """Built-ins, the PsychoPy rule, `<folder>/.jatosignore`, then `patterns`.

        Raises `ConfigError` naming the file and line (or the mapping pattern) of a bad
        pattern, or when `.jatosignore` exists but cannot be read.
        """
        lines: list[str] = list(_read_ignore_file(folder / IGNORE_FILE_NAME))
        for pattern in patterns:
            problem = pattern_problem(pattern)
            if problem is not None:
                raise ConfigError(
                    f"Ignore pattern {pattern!r} of the mapping for {folder} is not a valid "
                    f"gitignore pattern ({problem}); fix it in the configuration."
                )
            lines.append(pattern)
        return cls(BUILTIN_PATTERNS, folder=folder, overrides=lines)

    def match_entry(self, rel: str, *, is_dir: bool = False) -> bool:
        """Whether the entry `rel` ("a/b/c", "/"-separated) itself matches.

        For walkers that do not descend into ignored directories, so the parents of `rel`
        are already known not to be ignored. Everyone else uses `is_ignored`.
        """
        parent, _, name = rel.rpartition("/")
        if not is_dir and SERVER_TEMP_RE.match(name) is not None:
            return True
        shown = rel
        if not rel.isascii():
            # A name that is not valid UTF-8 arrives with surrogate escapes, which the RE2
            # backend of pathspec cannot encode; match it with U+FFFD in their place.
            shown = rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        if self._spec.match_file(shown + "/" if is_dir else shown):
            return True
        return (
            is_dir
            and self.folder is not None
            and name.lower() == PSYCHOPY_DATA_DIR
            and self._holds_psychopy_experiment(parent)
            and not self._re_included(shown + "/")
        )

    def is_ignored(self, path: RelPath, *, is_dir: bool = False) -> bool:
        """Whether `path` (relative to the folder) or any directory above it is ignored."""
        parts = path.parts
        if not parts or path.is_absolute():
            return False
        prefix = ""
        for part in parts[:-1]:
            prefix += part
            if self.match_entry(prefix, is_dir=True):
                return True
            prefix += "/"
        return self.match_entry(prefix + parts[-1], is_dir=is_dir)

    def decides_rules(self, path: RelPath) -> bool:
        """Whether a change of `path` can change what these rules ignore: the folder's
        `.jatosignore`, or a PsychoPy experiment anywhere. A watcher passes such a change
        on even when the path itself is ignored, and reloads its rules."""
        parts = path.parts
        if not parts or path.is_absolute():
            return False
        if parts == (IGNORE_FILE_NAME,):
            return True
        return parts[-1].lower().endswith(PSYCHOPY_SUFFIX)

    def __call__(self, path: RelPath) -> bool:
        """`is_ignored` for a file: usable as a filter callable."""
        return self.is_ignored(path)

    def __repr__(self) -> str:
        return f"IgnoreRules({len(self.patterns)} patterns)"

    def _re_included(self, rel: str) -> bool:
        """Whether one of the user's patterns, which come after the PsychoPy rule, says
        `rel` is not ignored (`!data/`)."""
        if not self._overrides:
            return False
        if self._override_spec is None:
            self._override_spec = _SplitSpec(self._overrides, chunk_size=self._chunk_size)
        return self._override_spec.decides(rel) is False

    def _holds_psychopy_experiment(self, rel_dir: str) -> bool:
        """Whether the directory `rel_dir` (relative to the folder) holds a `*.psyexp`.

        Listed once and cached while the directory's (device, inode, mtime) stay the same,
        so a `.psyexp` created or removed later (during `watch`) is noticed.
        """
        assert self.folder is not None
        directory = os.path.join(self.folder, *rel_dir.split("/")) if rel_dir else self.folder
        try:
            st = os.stat(directory)
        except OSError:
            return False  # gone, or unreadable: the scan reports that (`check_folder`)
        key = (st.st_dev, st.st_ino, st.st_mtime_ns)
        cached = self._psyexp_dirs.get(rel_dir)
        if cached is not None and cached[:3] == key:
            return cached[3]
        try:
            with os.scandir(directory) as entries:
                found = any(_is_psychopy_experiment(entry) for entry in entries)
        except OSError:
            return False
        if self._clock_ns() - st.st_mtime_ns >= _RACY_WINDOW_NS:
            self._psyexp_dirs[rel_dir] = (*key, found)
        else:
            self._psyexp_dirs.pop(rel_dir, None)  # changed just now: list it again next time
        return found


class _SplitSpec:
    """A `GitIgnoreSpec` over any number of patterns, as one or several automata.

    In gitignore order the last matching pattern decides (pathspec's GitIgnoreSpec adds a
    rule between directory and file matches). Patterns in a chunk without a match take no
    part in that decision: when only one chunk matches, its answer is the answer; when
    several do (rare), their patterns are evaluated together, in order, by pathspec's
    reference backend. So the result is exactly that of one automaton over all patterns.
    """

    def __init__(self, lines: Sequence[str], *, chunk_size: int) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, not {chunk_size}")
        patterns = [_parsed(line) for line in lines if line]
        self._chunks: list[GitIgnoreSpec] = []
        for start in range(0, max(1, len(patterns)), chunk_size):
            self._compile(patterns[start : start + chunk_size])
        self._merged: dict[tuple[int, ...], GitIgnoreSpec] = {}

    def _compile(self, patterns: list[GitIgnoreSpecPattern]) -> None:
        try:
            self._chunks.append(GitIgnoreSpec(patterns))
        except Exception:  # RE2 (or hyperscan) refused the set: too large for its budget
            if len(patterns) == 1:
                self._chunks.append(GitIgnoreSpec(patterns, backend="simple"))
                return
            half = len(patterns) // 2
            self._compile(patterns[:half])
            self._compile(patterns[half:])

    def match_file(self, path: str) -> bool:
        return bool(self.decides(path))

    def decides(self, path: str) -> bool | None:
        """True: ignored; False: re-included by a `!` pattern; None: no pattern matches."""
        if len(self._chunks) == 1:
            return self._chunks[0].check_file(path).include
        hits: list[int] = []
        include: bool | None = None
        for index, chunk in enumerate(self._chunks):
            found = chunk.check_file(path).include
            if found is not None:
                hits.append(index)
                include = found
        if len(hits) <= 1:
            return include
        merged = self._merged.get(key := tuple(hits))
        if merged is None:
            patterns = [p for i in hits for p in self._chunks[i].patterns]
            merged = self._merged[key] = GitIgnoreSpec(patterns, backend="simple")
        return merged.check_file(path).include


def _is_psychopy_experiment(entry: os.DirEntry[str]) -> bool:
    if not entry.name.lower().endswith(PSYCHOPY_SUFFIX):
        return False
    try:
        return not entry.is_dir()
    except OSError:
        return True  # cannot tell: the safe answer keeps participant data home


def _read_ignore_file(path: Path) -> Iterable[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (FileNotFoundError, NotADirectoryError):
        return []  # no such file, or the folder itself is unusable (`check_folder`)
    except (OSError, UnicodeDecodeError) as exc:
        # Without the file we cannot know what the user wanted kept off the server.
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"Cannot read the ignore file {path} ({reason}); fix or remove it."
        ) from exc
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    for number, line in enumerate(lines, start=1):
        problem = pattern_problem(line)
        if problem is not None:
            raise ConfigError(
                f"{path}:{number}: {line!r} is not a valid gitignore pattern ({problem}); "
                "fix or remove that line."
            )
    return lines
