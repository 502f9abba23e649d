from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from jatos_sync.errors import ConfigError, JatosSyncError
from jatos_sync.model import FileInfo, LocalFile, RelPath
from jatos_sync.scan import ChecksumCache
from jatos_sync.state import (
    MappingState,
    StateStore,
    StateWriteError,
    default_state_dir,
    mapping_key,
)

KEY = "study-0123456789abcdef"


def sample_state() -> MappingState:
    return MappingState(
        synced={
            RelPath("index.html"): FileInfo(6, 139133471, b"\x07" * 16),
            RelPath("img/a b.png"): FileInfo(9, 300286872),
            RelPath("stimuli/café.csv"): FileInfo(0, 1),
        },
        cache=ChecksumCache(
            {
                RelPath("index.html"): LocalFile(
                    6, 139133471, b"\x07" * 16, mtime_ns=1_600_000_000_000_000_000, inode=42
                )
            }
        ),
        root=(2049, 1234),
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "state")


# --- round trip and format -----------------------------------------------------------


def test_saved_state_loads_back_equal(store: StateStore) -> None:
    store.save(KEY, sample_state())
    loaded = store.load(KEY)
    assert loaded.synced == sample_state().synced
    assert loaded.cache.to_json() == sample_state().cache.to_json()


def test_state_file_has_the_documented_json_format(store: StateStore) -> None:
    store.save(KEY, sample_state())
    data = json.loads(store.state_path(KEY).read_text(encoding="utf-8"))
    assert data == {
        "version": 2,
        "synced": {
            "img/a b.png": [9, 300286872],
            "index.html": [6, 139133471, "07" * 16],
            "stimuli/café.csv": [0, 1],
        },
        "cache": {"index.html": [6, 1_600_000_000_000_000_000, 42, 139133471, "07" * 16]},
        "root": [2049, 1234],
    }


def test_uploads_in_doubt_are_kept_and_a_damaged_entry_is_dropped(store: StateStore) -> None:
    state = sample_state()
    state.in_doubt = {RelPath("index.html"): FileInfo(6, 139133471, b"\x07" * 16)}
    store.save(KEY, state)
    assert store.load(KEY).in_doubt == state.in_doubt
    assert store.load(KEY).in_doubt[RelPath("index.html")].digest == b"\x07" * 16
    data = json.loads(store.state_path(KEY).read_text(encoding="utf-8"))
    data["in_doubt"]["../escape.js"] = [1, 2]
    data["in_doubt"]["bad.js"] = [1, "two"]
    store.state_path(KEY).write_text(json.dumps(data), encoding="utf-8")
    assert store.load(KEY).in_doubt == state.in_doubt  # the rest of the file is trusted


def test_a_changed_in_doubt_record_is_saved(store: StateStore) -> None:
    state = store.load(KEY)
    store.save(KEY, state)
    state.in_doubt[RelPath("a.js")] = FileInfo(1, 2)
    store.save(KEY, state)
    assert store.load(KEY).in_doubt == {RelPath("a.js"): FileInfo(1, 2)}


def test_missing_state_is_empty_and_silent(store: StateStore) -> None:
    with capture_logs() as logs:
        state = store.load(KEY)
    assert state.synced == {}
    assert len(state.cache) == 0
    assert logs == []


def test_nothing_is_created_before_the_first_save(store: StateStore) -> None:
    store.load(KEY)
    store.backup_dir(KEY)
    store.status_path()
    assert not store.root.exists()


def test_save_overwrites_previous_state(store: StateStore) -> None:
    store.save(KEY, sample_state())
    store.save(KEY, MappingState(synced={RelPath("only.txt"): FileInfo(1, 2)}))
    assert store.load(KEY).synced == {RelPath("only.txt"): FileInfo(1, 2)}


def test_mappings_do_not_share_state(store: StateStore) -> None:
    store.save(KEY, sample_state())
    assert store.load("other-fedcba9876543210").synced == {}


# --- permissions and atomicity ---------------------------------------------------------


def test_directories_are_0700_and_file_is_0600(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "a" / "b" / "state")
    tmp_mode = mode(tmp_path)
    old_umask = os.umask(0o022)
    try:
        store.save(KEY, sample_state())
    finally:
        os.umask(old_umask)
    assert mode(store.state_path(KEY)) == 0o600
    for directory in (tmp_path / "a", tmp_path / "a" / "b", store.root, store.root / "mappings"):
        assert mode(directory) == 0o700, directory
    assert mode(tmp_path) == tmp_mode  # existing parents are left alone


def test_existing_directories_keep_their_mode(tmp_path: Path) -> None:
    root = tmp_path / "state"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    StateStore(root).save(KEY, sample_state())
    assert mode(root) == 0o755


def test_save_leaves_no_temp_files(store: StateStore) -> None:
    store.save(KEY, sample_state())
    store.save(KEY, sample_state())
    assert os.listdir(store.state_path(KEY).parent) == [f"{KEY}.json"]


@pytest.mark.parametrize("crash", [KeyboardInterrupt(), OSError(errno.EIO, "I/O error")])
def test_crash_between_write_and_replace_keeps_the_old_file(
    store: StateStore, monkeypatch: pytest.MonkeyPatch, crash: BaseException
) -> None:
    store.save(KEY, sample_state())
    before = store.state_path(KEY).read_bytes()

    def crashing_replace(*args: Any, **kwargs: Any) -> None:
        raise crash

    monkeypatch.setattr(os, "replace", crashing_replace)
    with pytest.raises((KeyboardInterrupt, StateWriteError)):
        store.save(KEY, MappingState())
    monkeypatch.undo()
    assert store.state_path(KEY).read_bytes() == before
    assert os.listdir(store.state_path(KEY).parent) == [f"{KEY}.json"]


def test_temp_file_left_by_a_killed_process_is_ignored(store: StateStore) -> None:
    store.save(KEY, sample_state())
    (store.state_path(KEY).parent / f".{KEY}.json.abc123.tmp").write_text("{", encoding="utf-8")
    assert store.load(KEY).synced == sample_state().synced


# --- write failures --------------------------------------------------------------------


def test_disk_full_is_a_state_write_error(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StateWriteError) as caught:
        store.save(KEY, sample_state())
    monkeypatch.undo()
    message = str(caught.value)
    assert "No space left on device" in message
    assert str(store.state_path(KEY)) in message
    assert "JATOS_SYNC_STATE_DIR" in message
    assert caught.value.exit_code == 1
    assert isinstance(caught.value, JatosSyncError)
    assert os.listdir(store.state_path(KEY).parent) == []


def test_state_dir_below_a_file_is_a_state_write_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("", encoding="utf-8")
    with pytest.raises(StateWriteError, match="Could not save the sync state"):
        StateStore(tmp_path / "file" / "state").save(KEY, sample_state())


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes to read-only dirs"
)
def test_read_only_state_dir_is_a_state_write_error(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    store.save(KEY, sample_state())
    mappings = store.state_path(KEY).parent
    mappings.chmod(0o500)
    try:
        with pytest.raises(StateWriteError, match="writable"):
            store.save(KEY, MappingState())
    finally:
        mappings.chmod(0o700)


def test_read_only_file_system_is_a_state_write_error(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # works as root too: the error the kernel gives on a read-only mount
    def read_only(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "mkdir", read_only)
    with pytest.raises(StateWriteError, match="Read-only file system"):
        store.save(KEY, sample_state())


# --- damaged state ---------------------------------------------------------------------

DAMAGED = [
    pytest.param(b"\x00\xff garbage \x89PNG", id="binary-garbage"),
    pytest.param(b'{"version": 1, "synced": {"a": [1, 2]', id="truncated"),
    pytest.param(b"", id="empty-file"),
    pytest.param(b"[1, 2, 3]", id="not-an-object"),
    pytest.param(b'{"synced": {}, "cache": {}}', id="no-version"),
    pytest.param(b'{"version": 3, "synced": {}, "cache": {}}', id="future-version"),
    pytest.param(b'{"version": 2, "synced": {"a": [1, 2, "xyz"]}}', id="bad-digest"),
    pytest.param(b'{"version": "1", "synced": {}, "cache": {}}', id="version-as-string"),
    pytest.param(b'{"version": 1, "synced": [], "cache": {}}', id="synced-not-object"),
    pytest.param(b'{"version": 1, "synced": {"a": [1]}}', id="entry-too-short"),
    pytest.param(b'{"version": 1, "synced": {"a": ["1", 2]}}', id="size-as-string"),
    pytest.param(b'{"version": 1, "synced": {"a": [1, true]}}', id="bool-checksum"),
    pytest.param(b'{"version": 1, "synced": {"a": [1, -2]}}', id="negative"),
    pytest.param(b'{"version": 1, "synced": {"a": [1, 4294967296]}}', id="checksum-too-big"),
    pytest.param(b'{"version": 1, "synced": {"a": {"size": 1}}}', id="entry-object"),
    pytest.param(b'{"version": 1, "synced": {"../x": [1, 2]}}', id="path-escapes"),
    pytest.param(b'{"version": 1, "synced": {"/etc/x": [1, 2]}}', id="absolute-path"),
    pytest.param(b'{"version": 1, "synced": {"a//b": [1, 2]}}', id="empty-part"),
    pytest.param(b'{"version": 1, "synced": {"": [1, 2]}}', id="empty-path"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deeply-nested"),
]


@pytest.mark.parametrize("content", DAMAGED)
def test_damaged_state_is_rebuilt_empty_with_a_warning(store: StateStore, content: bytes) -> None:
    store.save(KEY, sample_state())
    store.state_path(KEY).write_bytes(content)
    with capture_logs() as logs:
        state = store.load(KEY)
    assert state.synced == {}
    assert len(state.cache) == 0
    assert [(log["event"], log["log_level"], log["key"]) for log in logs] == [
        ("state_rebuilt", "warning", KEY)
    ]
    assert logs[0]["reason"]


def test_unreadable_state_file_is_rebuilt(store: StateStore) -> None:
    store.state_path(KEY).mkdir(parents=True)  # reading a directory fails with an OSError
    with capture_logs() as logs:
        assert store.load(KEY).synced == {}
    assert [log["event"] for log in logs] == ["state_rebuilt"]


def test_damaged_cache_alone_keeps_synced_and_drops_cache(store: StateStore) -> None:
    store.save(KEY, sample_state())
    data = json.loads(store.state_path(KEY).read_text(encoding="utf-8"))
    data["cache"] = {"index.html": "junk", "other": [1, 2, 3, 4, "ab" * 16]}
    store.state_path(KEY).write_text(json.dumps(data), encoding="utf-8")
    state = store.load(KEY)
    assert state.synced == sample_state().synced
    assert state.cache.to_json() == {"other": [1, 2, 3, 4, "ab" * 16]}


def test_a_version_1_state_is_read_and_its_entries_kept(store: StateStore) -> None:
    # Written before digests and folder identity were kept: the synced entries still say
    # which files this tool put on the server; the digests are simply unknown.
    store.state_path(KEY).parent.mkdir(parents=True)
    old = {"version": 1, "synced": {"a.txt": [1, 2]}, "cache": {"a.txt": [1, 2, 3, 4]}}
    store.state_path(KEY).write_text(json.dumps(old), encoding="utf-8")
    state = store.load(KEY)
    assert state.synced == {RelPath("a.txt"): FileInfo(1, 2)}
    assert state.synced[RelPath("a.txt")].digest == b""
    assert len(state.cache) == 0  # read once more, to learn the digests
    assert state.root is None


def test_missing_cache_is_an_empty_cache(store: StateStore) -> None:
    store.state_path(KEY).parent.mkdir(parents=True)
    store.state_path(KEY).write_text('{"version": 1, "synced": {"a": [1, 2]}}', encoding="utf-8")
    state = store.load(KEY)
    assert state.synced == {RelPath("a"): FileInfo(1, 2)}
    assert len(state.cache) == 0


# --- locations -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {
                "JATOS_SYNC_STATE_DIR": "/srv/js",
                "STATE_DIRECTORY": "/var/lib/x",
                "XDG_STATE_HOME": "/xdg",
                "HOME": "/home/u",
            },
            "/srv/js",
        ),
        (
            {"STATE_DIRECTORY": "/var/lib/jatos-sync:/var/lib/other", "XDG_STATE_HOME": "/xdg"},
            "/var/lib/jatos-sync",
        ),
        ({"XDG_STATE_HOME": "/xdg", "HOME": "/home/u"}, "/xdg/jatos-sync"),
        ({"XDG_STATE_HOME": "relative", "HOME": "/home/u"}, "/home/u/.local/state/jatos-sync"),
        (
            {"JATOS_SYNC_STATE_DIR": "", "STATE_DIRECTORY": "", "HOME": "/home/u"},
            "/home/u/.local/state/jatos-sync",
        ),
        ({"HOME": "/home/u"}, "/home/u/.local/state/jatos-sync"),
    ],
)
def test_default_state_dir_precedence(environ: dict[str, str], expected: str) -> None:
    assert default_state_dir(environ) == Path(expected)


def test_explicit_state_dir_expands_tilde() -> None:
    assert default_state_dir({"JATOS_SYNC_STATE_DIR": "~/js", "HOME": "/h"}) == (
        Path("~/js").expanduser()
    )


def test_store_without_root_uses_the_default_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JATOS_SYNC_STATE_DIR", str(tmp_path / "from-env"))
    assert StateStore().root == tmp_path / "from-env"


def test_backup_and_status_locations(store: StateStore) -> None:
    assert store.backup_dir(KEY) == store.root / "backups" / KEY
    assert store.status_path() == store.root / "daemons" / f"{os.getpid()}.json"
    assert store.status_path(7) == store.root / "daemons" / "7.json"
    assert store.state_path(KEY) == store.root / "mappings" / f"{KEY}.json"


@pytest.mark.parametrize("key", ["", "../x", "a/b", ".hidden", "a\\b", "a b"])
def test_unsafe_keys_are_refused(store: StateStore, key: str) -> None:
    with pytest.raises(ValueError, match="not a valid state key"):
        store.state_path(key)
    with pytest.raises(ValueError, match="not a valid state key"):
        store.backup_dir(key)


def test_mapping_key_is_stable_and_readable() -> None:
    key = mapping_key("https://jatos.example.org", "42", Path("/home/u/stroop study"))
    assert key == mapping_key("https://jatos.example.org/", "42", Path("/home/u/stroop study"))
    assert key.startswith("stroop_study-")
    assert len(key.rsplit("-", 1)[1]) == 16
    assert key == "stroop_study-" + _expected_digest(
        "https://jatos.example.org", "42", "/home/u/stroop study"
    )


def _expected_digest(url: str, study: str, folder: str) -> str:
    import hashlib

    return hashlib.sha256(f"{url}\n{study}\n{folder}".encode()).hexdigest()[:16]


def test_mapping_key_differs_per_server_study_and_folder() -> None:
    base = ("https://a.example", "1", Path("/p/study"))
    keys = {
        mapping_key(*base),
        mapping_key("https://b.example", "1", Path("/p/study")),
        mapping_key("https://a.example", "2", Path("/p/study")),
        mapping_key("https://a.example", "1", Path("/q/study")),
    }
    assert len(keys) == 4


def test_mapping_key_uses_the_absolute_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert mapping_key("u", "1", Path("study")) == mapping_key("u", "1", tmp_path / "study")


@pytest.mark.parametrize(
    "folder", ["/", "/p/..hidden", "/p/Studie Ü (v2)", "/p/a:b*c?", "/p/" + "x" * 300, "/p/-_-"]
)
def test_mapping_key_is_safe_as_a_file_name(store: StateStore, folder: str) -> None:
    key = mapping_key("https://a.example", "1", Path(folder))
    assert store.state_path(key).name == f"{key}.json"  # passes the key check
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in key)
    assert len(key) <= 60


def test_ensure_outside_refuses_state_inside_the_synced_folder(tmp_path: Path) -> None:
    StateStore(tmp_path / "elsewhere").ensure_outside(tmp_path / "study")
    with pytest.raises(ConfigError, match="inside the synced folder"):
        StateStore(tmp_path / "study" / ".state").ensure_outside(tmp_path / "study")
    with pytest.raises(ConfigError):
        StateStore(tmp_path / "study").ensure_outside(tmp_path / "study")
