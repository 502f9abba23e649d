from __future__ import annotations

import hashlib
import os
import unicodedata
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jatos_sync.errors import FileSyncError, LocalFileChangedError, SafetyStop
from jatos_sync.ignore import IgnoreRules
from jatos_sync.model import LocalFile, LocalSnapshot, PathProblem, RelPath
from jatos_sync.scan import (
    RACY_WINDOW_NS,
    ChecksumCache,
    adler32_file,
    check_folder,
    file_info_now,
    scan_folder,
)

OLD_NS = 1_600_000_000 * 10**9  # September 2020: far from "racy"
SECOND_NS = 10**9


def write(folder: Path, rel: str, data: bytes = b"x", *, mtime_ns: int | None = OLD_NS) -> Path:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def scan(folder: Path, **kwargs: Any) -> LocalSnapshot:
    return scan_folder(folder, IgnoreRules.for_folder(folder), **kwargs)


def names(snapshot: LocalSnapshot) -> list[str]:
    return [str(path) for path in snapshot.files]


def problems(items: tuple[PathProblem, ...]) -> dict[str, str]:
    return {str(problem.path): problem.reason for problem in items}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "study"
    path.mkdir()
    return path


# --- checksums -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"", 1), (b"hello\n", 139133471), (b"Wikipedia", 300286872)],
)
def test_adler32_file_matches_known_vectors(tmp_path: Path, data: bytes, expected: int) -> None:
    path = tmp_path / "f"
    path.write_bytes(data)
    assert adler32_file(path) == (len(data), expected)
    assert adler32_file(path, chunk_size=2) == (len(data), expected)


def test_adler32_file_streams_in_chunks_to_the_same_value(tmp_path: Path) -> None:
    data = bytes(range(256)) * 4099
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    expected = zlib.adler32(data) & 0xFFFFFFFF
    assert adler32_file(path, chunk_size=7) == (len(data), expected)
    assert adler32_file(path, chunk_size=1 << 16) == (len(data), expected)


# --- what a scan finds -----------------------------------------------------------------


def test_scan_lists_files_with_size_checksum_and_mtime(folder: Path) -> None:
    write(folder, "index.html", b"hello\n")
    write(folder, "img/icons/a.png", b"Wikipedia")
    snapshot = scan(folder)
    assert snapshot.files == {
        RelPath("img/icons/a.png"): LocalFile(9, 300286872, mtime_ns=OLD_NS),
        RelPath("index.html"): LocalFile(6, 139133471, mtime_ns=OLD_NS),
    }
    assert snapshot.errors == ()
    assert snapshot.unsyncable == ()


def test_empty_files_are_included(folder: Path) -> None:
    write(folder, "empty.txt", b"")
    assert scan(folder).files == {RelPath("empty.txt"): LocalFile(0, 1, mtime_ns=OLD_NS)}


def test_empty_folder_gives_empty_snapshot(folder: Path) -> None:
    (folder / "emptydir").mkdir()
    assert scan(folder) == LocalSnapshot(files={})


def test_ignored_files_are_left_out(folder: Path) -> None:
    write(folder, "index.html")
    write(folder, ".index.html.swp")
    write(folder, "4913")
    write(folder, "js/a.js~")
    write(folder, ".jatosignore", b"drafts/\n")
    write(folder, "drafts/new.html")
    assert names(scan(folder)) == ["index.html"]


def test_ignored_directories_are_not_descended(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(folder, ".git/objects/aa/bb")
    write(folder, "drafts/deep/x.html")
    write(folder, "js/a.js")
    listed: list[str] = []
    real_scandir = os.scandir

    def recording_scandir(path: Any) -> Any:
        listed.append(os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", recording_scandir)
    snapshot = scan_folder(folder, IgnoreRules.for_folder(folder, ["drafts/"]))
    assert names(snapshot) == ["js/a.js"]
    assert not [p for p in listed if ".git" in p or "drafts" in p]
    assert os.path.join(folder, "js") in listed


def test_names_with_special_characters_are_kept_verbatim(folder: Path) -> None:
    wanted = ["a b.png", "c+d.png", "50%.png", "list#1.csv", "R&D.txt", "stimuli/list 1.csv"]
    for rel in wanted:
        write(folder, rel)
    assert names(scan(folder)) == sorted(wanted)


def test_nfc_and_nfd_names_are_distinct_files(folder: Path) -> None:
    nfc = unicodedata.normalize("NFC", "caf\u00e9.txt")
    nfd = unicodedata.normalize("NFD", nfc)
    write(folder, nfc, b"nfc")
    write(folder, nfd, b"nfd!")
    if len(os.listdir(folder)) != 2:
        pytest.skip("this file system normalises Unicode names")
    files = scan(folder).files
    assert files[RelPath(nfc)].size == 3
    assert files[RelPath(nfd)].size == 4


# --- symbolic links and special files ---------------------------------------------------


def test_symlink_to_directory_above_is_reported_as_loop_not_followed(folder: Path) -> None:
    write(folder, "sub/a.txt")
    os.symlink("..", folder / "sub" / "up")
    os.symlink(".", folder / "here")
    snapshot = scan(folder)
    assert names(snapshot) == ["sub/a.txt"]
    assert problems(snapshot.unsyncable) == {"here": "symlink loop", "sub/up": "symlink loop"}
    assert snapshot.errors == ()


def test_self_referencing_symlink_is_a_loop(folder: Path) -> None:
    os.symlink("me", folder / "me")
    assert problems(scan(folder).unsyncable) == {"me": "symlink loop"}


def test_dangling_symlink_is_unsyncable(folder: Path) -> None:
    os.symlink("nowhere.png", folder / "logo.png")
    snapshot = scan(folder)
    assert snapshot.files == {}
    assert problems(snapshot.unsyncable) == {"logo.png": "broken symbolic link"}


def test_ignored_dangling_symlink_is_not_reported(folder: Path) -> None:
    os.symlink("user@host.12345:1700000000", folder / ".#index.html")  # an emacs lock link
    assert scan(folder) == LocalSnapshot(files={})


def test_symlinks_to_targets_outside_the_folder_are_followed(tmp_path: Path, folder: Path) -> None:
    shared = tmp_path / "shared"
    write(shared, "words.csv", b"hello\n")
    write(tmp_path, "logo.png", b"Wikipedia")
    os.symlink(shared, folder / "stimuli")
    os.symlink(tmp_path / "logo.png", folder / "logo.png")
    files = scan(folder).files
    assert files[RelPath("stimuli/words.csv")].checksum == 139133471
    assert files[RelPath("logo.png")].checksum == 300286872


def test_directory_linked_twice_is_listed_under_both_paths(folder: Path) -> None:
    # not a loop: JATOS lists such files twice too (docs/jatos-api.md §3.6)
    write(folder, "real/a.txt")
    os.symlink("real", folder / "js_link", target_is_directory=True)
    assert names(scan(folder)) == ["js_link/a.txt", "real/a.txt"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_fifo_is_unsyncable_and_never_opened(folder: Path) -> None:
    os.mkfifo(folder / "pipe")
    snapshot = scan(folder)
    assert snapshot.files == {}
    assert "named pipe" in problems(snapshot.unsyncable)["pipe"]


def test_non_utf8_file_name_is_unsyncable(folder: Path) -> None:
    os.close(os.open(os.path.join(os.fsencode(folder), b"caf\xe9.png"), os.O_CREAT | os.O_WRONLY))
    write(folder, "ok.png")
    snapshot = scan(folder)
    assert names(snapshot) == ["ok.png"]
    assert problems(snapshot.unsyncable) == {
        "caf\\xe9.png": "file name is not valid UTF-8; rename it"
    }
    str(snapshot.unsyncable[0].path).encode("utf-8")  # printable, unlike a surrogate


def test_non_utf8_directory_is_unsyncable_and_not_descended(folder: Path) -> None:
    bad_dir = os.path.join(os.fsencode(folder), b"d\xff")
    os.mkdir(bad_dir)
    os.close(os.open(os.path.join(bad_dir, b"in.txt"), os.O_CREAT | os.O_WRONLY))
    snapshot = scan(folder)
    assert snapshot.files == {}
    assert list(problems(snapshot.unsyncable)) == ["d\\xff"]


# --- errors ----------------------------------------------------------------------------


def fail_for(monkeypatch: pytest.MonkeyPatch, name: str, attribute: str, exc: OSError) -> list[str]:
    """Make os.<attribute> raise `exc` for paths ending in `name` (works as root too)."""
    real: Callable[..., Any] = getattr(os, attribute)
    calls: list[str] = []

    def failing(path: Any, *args: Any, **kwargs: Any) -> Any:
        text = os.fspath(path)
        if isinstance(text, str) and text.endswith(name):
            calls.append(text)
            raise exc
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, attribute, failing)
    return calls


def test_unreadable_file_is_a_scan_error(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(folder, "secret.csv")
    write(folder, "ok.csv")
    calls = fail_for(monkeypatch, "secret.csv", "open", PermissionError(13, "Permission denied"))
    snapshot = scan(folder)
    assert calls
    assert names(snapshot) == ["ok.csv"]
    assert problems(snapshot.errors) == {"secret.csv": "permission denied; make it readable"}


def test_unreadable_directory_is_a_scan_error(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(folder, "private/a.csv")
    write(folder, "ok.csv")
    fail_for(monkeypatch, "private", "scandir", PermissionError(13, "Permission denied"))
    snapshot = scan(folder)
    assert names(snapshot) == ["ok.csv"]
    assert problems(snapshot.errors) == {"private": "permission denied; make it readable"}


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads files despite mode 000"
)
def test_file_with_mode_000_is_a_scan_error(folder: Path) -> None:
    path = write(folder, "secret.csv")
    path.chmod(0)
    try:
        assert list(problems(scan(folder).errors)) == ["secret.csv"]
    finally:
        path.chmod(0o600)


def test_other_os_error_is_a_scan_error_with_its_reason(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(folder, "a.csv")
    fail_for(monkeypatch, "a.csv", "open", OSError(5, "Input/output error"))
    assert problems(scan(folder).errors) == {"a.csv": "Input/output error"}


def test_file_vanishing_between_listing_and_reading_is_simply_absent(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = write(folder, "gone.txt")
    write(folder, "stays.txt")
    real_open = os.open

    def deleting_open(path: Any, *args: Any, **kwargs: Any) -> int:
        if os.fspath(path) == str(victim):
            victim.unlink()
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", deleting_open)
    snapshot = scan(folder)
    assert names(snapshot) == ["stays.txt"]
    assert snapshot.errors == ()


def appending_open(monkeypatch: pytest.MonkeyPatch, victim: Path) -> list[int]:
    """Grow `victim` whenever its open descriptor is stat-ed, as a writer still busy would."""
    real_fstat = os.fstat
    inode = victim.stat().st_ino
    calls: list[int] = []

    def growing_fstat(fd: int) -> os.stat_result:
        result = real_fstat(fd)
        if result.st_ino == inode:
            calls.append(fd)
            with victim.open("ab") as stream:
                stream.write(b"more")
        return result

    monkeypatch.setattr(os, "fstat", growing_fstat)
    return calls


def test_file_that_keeps_changing_while_read_is_a_scan_error(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = write(folder, "log.txt", b"start")
    fstat_calls = appending_open(monkeypatch, victim)
    snapshot = scan(folder)
    assert len(fstat_calls) == 6  # three attempts, each stat-ing before and after reading
    assert snapshot.files == {}
    assert "kept changing" in problems(snapshot.errors)["log.txt"]


@pytest.mark.parametrize("make", ["missing", "file"])
def test_unusable_folder_is_a_safety_stop(tmp_path: Path, make: str) -> None:
    target = tmp_path / "study"
    if make == "file":
        target.write_text("not a folder", encoding="utf-8")
    with pytest.raises(SafetyStop) as caught:
        scan(target)
    message = str(caught.value)
    assert str(target) in message
    assert "nothing was changed on the server" in message
    assert ("does not exist" if make == "missing" else "not a directory") in message


def test_unreadable_folder_is_a_safety_stop(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fail_for(monkeypatch, "study", "scandir", PermissionError(13, "Permission denied"))
    with pytest.raises(SafetyStop, match=r"cannot be read.*nothing was changed on the server"):
        check_folder(folder)
    with pytest.raises(SafetyStop):
        scan_folder(folder, IgnoreRules())


def test_check_folder_accepts_a_symlink_to_a_folder(tmp_path: Path, folder: Path) -> None:
    os.symlink(folder, tmp_path / "link")
    check_folder(tmp_path / "link")


# --- checksum cache --------------------------------------------------------------------


def test_unchanged_folder_is_rescanned_without_reading_content(folder: Path) -> None:
    for i in range(20):
        write(folder, f"img/{i}.png", bytes([i]) * 100)
    cache = ChecksumCache()
    first = scan(folder, cache=cache)
    assert cache.bytes_read == 2000
    assert cache.misses == 20
    cache.bytes_read = 0
    second = scan(folder, cache=cache)
    assert cache.bytes_read == 0
    assert cache.hits == 20
    assert second == first


def test_the_cache_holds_a_full_scans_table_and_never_changes_it(folder: Path) -> None:
    # One table per mapping less for a daemon (docs/design.md): the cache takes the
    # snapshot's table after a whole scan, and copies it before a change of its own.
    write(folder, "a.txt", b"one")
    write(folder, "b.txt", b"two")
    cache = ChecksumCache()
    first = scan(folder, cache=cache)
    assert cache._entries is first.files
    shown = dict(first.files)
    write(folder, "b.txt", b"TWO", mtime_ns=OLD_NS + SECOND_NS)
    second = scan(folder, cache=cache, under=RelPath("b.txt"))
    assert first.files == shown and first.files[RelPath("b.txt")] is shown[RelPath("b.txt")]
    assert cache._entries is not first.files
    assert (
        cache.lookup(RelPath("b.txt"), os.stat(folder / "b.txt"), now_ns=OLD_NS * 2)
        is (second.files[RelPath("b.txt")])
    )


def test_a_racy_file_keeps_the_cache_from_holding_the_scans_table(folder: Path) -> None:
    write(folder, "old.txt", b"one")
    write(folder, "new.txt", b"two", mtime_ns=OLD_NS + 100 * SECOND_NS)
    cache = ChecksumCache()
    snapshot = scan(folder, cache=cache, clock_ns=lambda: OLD_NS + 100 * SECOND_NS)
    assert len(snapshot.files) == 2 and len(cache) == 1  # the racy one is not trusted
    assert cache._entries is not snapshot.files


def test_cache_survives_json_round_trip(folder: Path) -> None:
    write(folder, "a.txt", b"hello\n")
    cache = ChecksumCache()
    scan(folder, cache=cache)
    restored = ChecksumCache.from_json(cache.to_json())
    scan(folder, cache=restored)
    assert restored.bytes_read == 0
    assert restored.hits == 1


def test_racy_mtime_forces_rehash_and_is_not_cached(folder: Path) -> None:
    mtime = OLD_NS
    write(folder, "a.txt", b"hello\n", mtime_ns=mtime)
    cache = ChecksumCache()
    racy_clock = lambda: mtime + RACY_WINDOW_NS - 1  # noqa: E731
    scan(folder, cache=cache, clock_ns=racy_clock)
    assert len(cache) == 0
    scan(folder, cache=cache, clock_ns=racy_clock)
    assert cache.bytes_read == 12
    # once the mtime has aged, the file is hashed one more time, then trusted
    later = lambda: mtime + 10 * SECOND_NS  # noqa: E731
    scan(folder, cache=cache, clock_ns=later)
    scan(folder, cache=cache, clock_ns=later)
    assert cache.bytes_read == 18
    assert cache.hits == 1


def test_racy_cache_entry_is_not_trusted_even_if_it_matches(tmp_path: Path) -> None:
    path = write(tmp_path, "a.txt", b"hello\n")
    st = os.stat(path)
    digest = b"d" * 16
    cache = ChecksumCache(
        {
            RelPath("a.txt"): LocalFile(
                st.st_size, 42, digest, mtime_ns=st.st_mtime_ns, inode=st.st_ino
            )
        }
    )
    assert cache.lookup(RelPath("a.txt"), st, now_ns=st.st_mtime_ns + SECOND_NS) is None
    assert cache.lookup(RelPath("a.txt"), st, now_ns=st.st_mtime_ns - SECOND_NS) is None
    found = cache.lookup(RelPath("a.txt"), st, now_ns=st.st_mtime_ns + 3 * SECOND_NS)
    assert found is not None
    assert (found.checksum, found.digest) == (42, digest)


def test_store_skips_racy_files(tmp_path: Path) -> None:
    path = write(tmp_path, "a.txt")
    st = os.stat(path)
    cache = ChecksumCache()
    cache.store(RelPath("a.txt"), st, 7, b"\x01" * 16, now_ns=st.st_mtime_ns + 1)
    assert len(cache) == 0
    cache.store(RelPath("a.txt"), st, 7, b"\x01" * 16, now_ns=st.st_mtime_ns + RACY_WINDOW_NS)
    assert cache.to_json() == {"a.txt": [st.st_size, st.st_mtime_ns, st.st_ino, 7, "01" * 16]}


def test_size_change_with_same_mtime_invalidates_cache(folder: Path) -> None:
    path = write(folder, "a.txt", b"hello\n")
    cache = ChecksumCache()
    scan(folder, cache=cache)
    path.write_bytes(b"Wikipedia")
    os.utime(path, ns=(OLD_NS, OLD_NS))
    assert scan(folder, cache=cache).files[RelPath("a.txt")].checksum == 300286872


def test_inode_change_with_same_size_and_mtime_invalidates_cache(folder: Path) -> None:
    path = write(folder, "a.txt", b"aaaa")
    cache = ChecksumCache()
    scan(folder, cache=cache)
    replacement = write(folder, "a.txt.new", b"bbbb")  # both exist: distinct inodes
    os.replace(replacement, path)
    files = scan(folder, cache=cache).files
    assert files[RelPath("a.txt")].checksum == zlib.adler32(b"bbbb")
    assert cache.hits == 0


def test_cache_forgets_files_that_disappeared(folder: Path) -> None:
    write(folder, "keep.txt")
    gone = write(folder, "gone.txt")
    cache = ChecksumCache()
    scan(folder, cache=cache)
    gone.unlink()
    scan(folder, cache=cache)
    assert list(cache.to_json()) == ["keep.txt"]


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "x",
        {"a": [1, 2, 3]},
        {"a": [1, 2, 3, "4"]},
        {"a": [1, 2, 3, True]},
        {"a": [1, 2, 3, -4]},
        {"a": [1, 2, 3, 2**32]},
        {"a": {"size": 1}},
        {"": [1, 2, 3, 4]},
    ],
)
def test_cache_from_json_drops_malformed_entries(data: object) -> None:
    assert ChecksumCache.from_json(data).to_json() == {}


def test_cache_from_json_keeps_good_entries_next_to_bad_ones() -> None:
    digest = "ab" * 16
    cache = ChecksumCache.from_json(
        {"a": [1, 2, 3, 4, digest], "b": "junk", "c": [1, 2, 3, 4, "zz"], "d": [1, 2, 3, 4]}
    )
    assert cache.to_json() == {"a": [1, 2, 3, 4, digest]}


# --- file_info_now ---------------------------------------------------------------------


def test_file_info_now_rehashes_without_cache(folder: Path) -> None:
    write(folder, "img/a b.png", b"Wikipedia")
    assert file_info_now(folder, RelPath("img/a b.png")) == LocalFile(9, 300286872, mtime_ns=OLD_NS)


@pytest.mark.parametrize("rel", ["gone.txt", "dir", "file.txt/below"])
def test_file_info_now_returns_none_when_the_file_is_gone(folder: Path, rel: str) -> None:
    (folder / "dir").mkdir()
    write(folder, "file.txt")
    assert file_info_now(folder, RelPath(rel)) is None


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_file_info_now_refuses_a_fifo_without_blocking(folder: Path) -> None:
    os.mkfifo(folder / "pipe")
    with pytest.raises(FileSyncError, match="named pipe"):
        file_info_now(folder, RelPath("pipe"))


def test_file_info_now_reports_unreadable_file(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(folder, "a.txt")
    fail_for(monkeypatch, "a.txt", "open", PermissionError(13, "Permission denied"))
    with pytest.raises(FileSyncError, match=r"Cannot read a\.txt: permission denied"):
        file_info_now(folder, RelPath("a.txt"))


def test_file_info_now_reports_a_file_still_being_written(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = write(folder, "a.txt")
    appending_open(monkeypatch, victim)
    with pytest.raises(LocalFileChangedError, match="kept changing"):
        file_info_now(folder, RelPath("a.txt"))


@pytest.mark.parametrize("rel", ["../outside.txt", "/etc/passwd", "."])
def test_file_info_now_rejects_paths_outside_the_folder(folder: Path, rel: str) -> None:
    with pytest.raises(ValueError, match="not a path inside the folder"):
        file_info_now(folder, RelPath(rel))


@pytest.fixture(autouse=True)
def _no_fd_leak() -> Iterator[None]:
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0
    yield
    after = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0
    assert after <= before


def test_scan_records_a_strong_digest_that_tells_apart_what_adler32_cannot(
    folder: Path,
) -> None:
    # Swapping counterbalanced values keeps the size and the Adler-32 (docs/safety.md,
    # rule 12); the digest differs, also when it comes from the cache.
    before, after = b"{A: 1, B: 2, C: 2, D: 1}", b"{A: 2, B: 1, C: 1, D: 2}"
    write(folder, "a.json", before)
    cache = ChecksumCache()
    first = scan(folder, cache=cache).files[RelPath("a.json")]
    cached = scan(folder, cache=cache).files[RelPath("a.json")]
    write(folder, "a.json", after, mtime_ns=OLD_NS + SECOND_NS)
    second = scan(folder, cache=cache).files[RelPath("a.json")]
    assert first.info == second.info  # size and Adler-32 agree
    assert first.digest == cached.digest == hashlib.sha256(before).digest()[:16]
    assert second.digest == hashlib.sha256(after).digest()[:16]


# --- one classification for the walk and for a scan under one path ---------------------


def at_or_below(snapshot: LocalSnapshot, rel: str) -> LocalSnapshot:
    def keep(path: RelPath) -> bool:
        return str(path) == rel or str(path).startswith(rel + "/")

    return LocalSnapshot(
        files={p: f for p, f in snapshot.files.items() if keep(p)},
        errors=tuple(p for p in snapshot.errors if keep(p.path)),
        unsyncable=tuple(p for p in snapshot.unsyncable if keep(p.path)),
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_scan_under_any_entry_finds_what_the_walk_finds_there(
    tmp_path: Path, folder: Path
) -> None:
    write(folder, "a.js")
    write(folder, "sub/b.js")
    write(folder, "sub/deeper/c.js")
    os.mkfifo(folder / "pipe")
    os.mkfifo(folder / "sub" / "pipe")
    os.symlink("a.jss", folder / "typo.js")  # dangling
    os.symlink("me.js", folder / "me.js")  # a loop of one link
    os.symlink("..", folder / "sub" / "up")  # a link to an ancestor
    os.symlink("sub", folder / "sub-link")  # a directory linked twice
    write(tmp_path, "outside/d.js")
    os.symlink(tmp_path / "outside", folder / "shared")
    os.close(os.open(os.path.join(os.fsencode(folder), b"caf\xe9.js"), os.O_CREAT | os.O_WRONLY))
    os.mkdir(os.path.join(os.fsencode(folder), b"d\xff"))
    write(folder, ".git/config")  # ignored
    whole = scan(folder)
    assert "sub/up" in problems(whole.unsyncable) and "pipe" in problems(whole.unsyncable)
    paths = [*map(str, whole.files), *problems(whole.unsyncable), *problems(whole.errors)]
    paths += ["sub", "sub/deeper", "sub-link", "shared", ".git", ".git/config", "missing.js"]
    for rel in paths:
        if "\\x" in rel:  # shown escaped; the watcher passes the name as the OS gave it
            continue
        assert scan(folder, under=RelPath(rel)) == at_or_below(whole, rel), rel
    for raw, shown in ((b"caf\xe9.js", "caf\\xe9.js"), (b"d\xff", "d\\xff")):
        under = RelPath(os.fsdecode(raw))
        assert scan(folder, under=under) == at_or_below(whole, shown), shown


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: os.mkfifo(p), "a named pipe (FIFO), not a regular file"),
        (lambda p: os.symlink("index.htm", p), "broken symbolic link"),
        (lambda p: os.symlink(p.name, p), "symlink loop"),
    ],
    ids=["fifo", "dangling-link", "link-loop"],
)
def test_a_file_replaced_by_something_unsyncable_is_reported_by_a_scan_under_it(
    folder: Path, make: Callable[[Path], None], reason: str
) -> None:
    path = write(folder, "js/index.html")
    path.unlink()
    make(path)
    snapshot = scan(folder, under=RelPath("js/index.html"))
    assert snapshot.files == {}
    assert reason in problems(snapshot.unsyncable)["js/index.html"]


def test_a_path_that_cannot_be_looked_at_is_an_error_not_gone(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(folder, "private/a.csv")
    fail_for(monkeypatch, "a.csv", "stat", PermissionError(13, "Permission denied"))
    snapshot = scan(folder, under=RelPath("private/a.csv"))
    assert problems(snapshot.errors) == {"private/a.csv": "permission denied; make it readable"}


def test_a_path_below_a_folder_that_cannot_be_looked_at_is_that_folders_error(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(folder, "private/sub/a.csv")
    fail_for(monkeypatch, "private", "stat", PermissionError(13, "Permission denied"))
    snapshot = scan(folder, under=RelPath("private/sub/a.csv"))
    assert snapshot.files == {}
    assert problems(snapshot.errors) == {"private": "permission denied; make it readable"}


def test_an_unlistable_folder_is_an_error_at_its_own_path_in_both_scans(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(folder, "private/a.csv")
    fail_for(monkeypatch, "private", "scandir", PermissionError(13, "Permission denied"))
    expected = {"private": "permission denied; make it readable"}
    assert problems(scan(folder).errors) == expected
    assert problems(scan(folder, under=RelPath("private")).errors) == expected


def test_a_path_below_a_loop_or_an_ignored_folder_gives_what_the_walk_gives(
    folder: Path,
) -> None:
    write(folder, "sub/a.js")
    write(folder, "drafts/b.js")
    os.symlink("..", folder / "sub" / "up")
    (folder / ".jatosignore").write_text("drafts/\n", encoding="utf-8")
    assert problems(scan(folder, under=RelPath("sub/up/sub/a.js")).unsyncable) == {
        "sub/up": "symlink loop"
    }
    assert scan(folder, under=RelPath("drafts/b.js")) == LocalSnapshot(files={})
