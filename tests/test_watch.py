"""watch.py: the pure debouncer (explicit `now`), event translation fed from a scripted fake
observer, mount-type detection and the polling fallback. Real observers: test_watch_real.py."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

from jatos_sync.debounce import Change
from jatos_sync.model import RelPath
from jatos_sync.watch import FolderWatcher, Mode, choose_mode, fs_type_of, limit_advice

P = RelPath


# ----------------------------------------------------------------- events or polling

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
40 27 259:3 / /home rw,relatime shared:2 - btrfs /dev/nvme0n1p3 rw
41 40 0:50 / /home/ana/lab rw,relatime - nfs4 fs.uni.example:/lab rw,vers=4.2
42 27 0:51 / /mnt/my\\040share rw,relatime - cifs //nas/share rw
43 27 0:52 / /mnt/usb rw,relatime - fuseblk /dev/sdb1 rw
44 27 0:53 / /mnt/usb rw,relatime - fuse.sshfs ana@host:/ rw
"""


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/home/ana/exp", "btrfs"),
        ("/home/ana/lab", "nfs4"),
        ("/home/ana/lab/stroop/img", "nfs4"),
        ("/home/ana/laboratory", "btrfs"),  # a prefix of the name is not a parent
        ("/mnt/my share/exp", "cifs"),
        ("/mnt/usb/exp", "fuse.sshfs"),  # mounted on top of the earlier one
        ("/srv/exp", "ext4"),
    ],
)
def test_the_file_system_is_that_of_the_longest_mount_point_holding_the_path(
    path: str, expected: str
) -> None:
    assert fs_type_of(path, MOUNTINFO) == expected


def test_no_matching_mount_means_unknown() -> None:
    assert fs_type_of("/x", "garbage line\n") is None


@pytest.mark.parametrize(
    ("polling", "fs_type", "mode"),
    [
        ("auto", "ext4", "events"),
        ("auto", None, "events"),
        ("auto", "fuseblk", "events"),
        ("auto", "nfs4", "polling"),
        ("auto", "cifs", "polling"),
        ("auto", "9p", "polling"),
        ("auto", "fuse.sshfs", "polling"),
        ("auto", "fuse.rclone", "polling"),
        ("auto", "vboxsf", "polling"),
        ("auto", "virtiofs", "polling"),
        ("never", "nfs4", "events"),
        ("always", "ext4", "polling"),
    ],
)
def test_polling_is_chosen_for_network_file_systems(
    polling: str, fs_type: str | None, mode: str
) -> None:
    assert choose_mode(polling, fs_type)[0] == mode


def fake_proc(root: Path, *, mountinfo: str, watches: str = "8192") -> Path:
    (root / "self").mkdir(parents=True)
    (root / "self" / "mountinfo").write_text(mountinfo)
    limits = root / "sys" / "fs" / "inotify"
    limits.mkdir(parents=True)
    (limits / "max_user_watches").write_text(watches + "\n")
    (limits / "max_user_instances").write_text("128\n")
    return root


def test_limit_advice_gives_the_current_value_and_how_to_raise_it(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, mountinfo="")
    reason, hint = limit_advice(errno.ENOSPC, proc=proc)
    assert "fs.inotify.max_user_watches = 8192" in reason
    assert "sudo sysctl fs.inotify.max_user_watches=524288" in hint
    assert "/etc/sysctl.d/" in hint
    reason, hint = limit_advice(errno.EMFILE, proc=proc)
    assert "max_user_instances = 128" in reason
    assert "fs.inotify.max_user_instances=1024" in hint


# ------------------------------------------------------------ a scripted fake observer


class FakeObserver:
    """A scripted observer: `emit` hands events to the handler. `fail` makes `schedule`
    raise; `fail_paths` does so for those paths only. `watches`: what is scheduled now."""

    def __init__(
        self,
        mode: Mode,
        interval_s: float,
        fail: OSError | None = None,
        fail_paths: dict[str, OSError] | None = None,
    ) -> None:
        self.mode, self.interval_s, self.fail = mode, interval_s, fail
        self.fail_paths = fail_paths or {}
        self.handler: FileSystemEventHandler | None = None
        self.path = ""
        self.watches: dict[object, tuple[str, bool]] = {}
        self.started = self.stopped = False

    def schedule(
        self,
        event_handler: FileSystemEventHandler,
        path: str,
        *,
        recursive: bool,
        event_filter: list[type[FileSystemEvent]] | None,
    ) -> object:
        if self.fail is not None:
            raise self.fail
        if path in self.fail_paths:
            raise self.fail_paths[path]
        self.handler = event_handler
        self.path = self.path or path
        watch = object()
        self.watches[watch] = (path, recursive)
        return watch

    def unschedule(self, watch: object) -> None:
        del self.watches[watch]

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def join(self, timeout: float | None = None) -> None:
        if not self.started:
            raise RuntimeError("cannot join thread before it is started")

    def is_alive(self) -> bool:
        return self.started and not self.stopped

    def emit(self, *events: FileSystemEvent) -> None:
        assert self.handler is not None
        for event in events:
            self.handler.dispatch(event)


class Rig:
    """A FolderWatcher on a real temp folder, fed by a FakeObserver. `mounts`: more
    (path, file-system type) lines for the fake mountinfo."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        polling: str = "auto",
        fs: str = "ext4",
        mounts: tuple[tuple[Path, str], ...] = (),
    ) -> None:
        self.folder = tmp_path / "exp"
        self.folder.mkdir(parents=True)
        self.root = str(self.folder.resolve())
        mountinfo = f"1 0 8:1 / / rw - ext4 /dev/sda1 rw\n2 1 0:9 / {self.root} rw - {fs} x rw\n"
        for number, (path, kind) in enumerate(mounts, start=3):
            mountinfo += f"{number} 1 0:{number} / {path.resolve()} rw - {kind} x rw\n"
        self.proc = fake_proc(tmp_path / "proc", mountinfo=mountinfo)
        self.changes: list[Change] = []
        self.observers: list[FakeObserver] = []
        self.fail: dict[str, OSError] = {}
        self.fail_paths: dict[str, OSError] = {}
        self.now = 1000.0
        self.watcher = FolderWatcher(
            self.folder,
            name="exp",
            sink=self.changes.append,
            ignore=("*.psd",),
            polling=polling,
            poll_interval_s=0.5,
            observer_factory=self.factory,
            proc=self.proc,
            clock=lambda: self.now,
        )

    def factory(self, mode: Mode, interval_s: float) -> FakeObserver:
        observer = FakeObserver(mode, interval_s, self.fail.get(mode), self.fail_paths)
        self.observers.append(observer)
        return observer

    def p(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def emit(self, *events: FileSystemEvent) -> list[Change]:
        self.observers[-1].emit(*events)
        return self.taken()

    def taken(self) -> list[Change]:
        changes, self.changes[:] = list(self.changes), []
        return changes

    def watched(self) -> dict[str, tuple[Mode, bool]]:
        """What the observers watch: real path -> (mode, recursive)."""
        return {
            path: (observer.mode, recursive)
            for observer in self.observers
            if not observer.stopped
            for path, recursive in observer.watches.values()
        }


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    assert rig.watcher.start() == "events"
    yield rig
    rig.watcher.stop()


def touch(path: str, *, is_dir: bool = False) -> Change:
    return Change("touch", P(path), is_dir=is_dir)


def gone(path: str, *, is_dir: bool = False) -> Change:
    return Change("gone", P(path), is_dir=is_dir)


def done(path: str) -> Change:
    return Change("done", P(path))


def test_writes_become_touches_a_finished_write_is_done_and_reads_are_ignored(rig: Rig) -> None:
    f = rig.p("img/a b.png")
    assert rig.emit(
        FileCreatedEvent(f),
        FileOpenedEvent(f),
        FileModifiedEvent(f),
        FileClosedEvent(f),
        FileAttribEvent(f),
        FileClosedNoWriteEvent(f),
        DirModifiedEvent(rig.p("img")),
    ) == [touch("img/a b.png")] * 2 + [done("img/a b.png"), touch("img/a b.png")]
    assert rig.observers[-1].path == rig.root


def test_moves_become_gone_and_touch_and_outside_paths_are_dropped(rig: Rig) -> None:
    assert rig.emit(
        FileMovedEvent(rig.p("a.js"), rig.p("b.js")),
        FileMovedEvent(rig.p("c.js"), "/elsewhere/c.js"),
        FileMovedEvent("/elsewhere/d.js", rig.p("d.js")),
        FileDeletedEvent("/elsewhere/e.js"),
    ) == [gone("a.js"), done("b.js"), gone("c.js"), done("d.js")]


def test_directory_events_name_the_directory(rig: Rig) -> None:
    assert rig.emit(
        DirCreatedEvent(rig.p("dist")),
        DirDeletedEvent(rig.p("old")),
        DirMovedEvent(rig.p("stim"), rig.p("stimuli")),
    ) == [
        touch("dist", is_dir=True),
        gone("old", is_dir=True),
        gone("stim", is_dir=True),
        touch("stimuli", is_dir=True),
    ]


def test_editor_and_tool_temp_files_are_dropped(rig: Rig) -> None:
    f = rig.p("index.html")
    events = [
        # vim: write probe, backup by rename, swap file
        FileCreatedEvent(rig.p("4913")),
        FileDeletedEvent(rig.p("4913")),
        FileModifiedEvent(rig.p(".index.html.swp")),
        FileMovedEvent(f, rig.p("index.html~")),
        FileCreatedEvent(f),
        FileDeletedEvent(rig.p("index.html~")),
        # emacs: auto-save file and lock link
        FileCreatedEvent(rig.p("#index.html#")),
        FileCreatedEvent(rig.p(".#index.html")),
        # JetBrains safe write
        FileCreatedEvent(rig.p("index.html___jb_tmp___")),
        FileMovedEvent(f, rig.p("index.html___jb_old___")),
        FileMovedEvent(rig.p("index.html___jb_tmp___"), f),
        FileDeletedEvent(rig.p("index.html___jb_old___")),
        # version control, the mapping's own pattern, and a JATOS upload temp name
        FileModifiedEvent(rig.p(".git/index")),
        DirCreatedEvent(rig.p(".git/objects/ab")),
        FileCreatedEvent(rig.p("raw/photo.psd")),
        FileCreatedEvent(rig.p(".index.html.tmp-0f8fad5b-d9cb-469f-a165-70867728950e")),
    ]
    assert rig.emit(*events) == [
        gone("index.html"),
        touch("index.html"),
        gone("index.html"),
        done("index.html"),  # renamed into place: complete
    ]


def test_the_folder_itself_deleted_is_reported(rig: Rig) -> None:
    assert rig.emit(DirDeletedEvent(rig.root)) == [Change("folder_gone")]


def test_a_changed_jatosignore_reloads_the_rules_and_is_passed_on(rig: Rig) -> None:
    assert rig.emit(FileCreatedEvent(rig.p("notes.txt"))) == [touch("notes.txt")]
    (rig.folder / ".jatosignore").write_text("*.txt\n")
    assert rig.emit(FileModifiedEvent(rig.p(".jatosignore"))) == [touch(".jatosignore")]
    assert rig.emit(FileModifiedEvent(rig.p("notes.txt"))) == []


def test_a_broken_jatosignore_filters_by_the_built_in_rules_only(rig: Rig) -> None:
    (rig.folder / ".jatosignore").write_text("*.txt\n\\\n")
    assert rig.emit(FileModifiedEvent(rig.p(".jatosignore"))) == [touch(".jatosignore")]
    assert rig.emit(FileModifiedEvent(rig.p("notes.txt"))) == [touch("notes.txt")]
    assert rig.emit(FileModifiedEvent(rig.p("a.swp"))) == []


def test_an_inotify_overflow_asks_for_a_rescan_until_the_watcher_stops(rig: Rig) -> None:
    inotify_log = logging.getLogger("watchdog.observers.inotify_c")
    with capture_logs() as logs:
        inotify_log.warning("Inotify queue overflowed; filesystem events were lost")
        inotify_log.warning("something unrelated")
    assert rig.changes == [Change("rescan")]
    assert [e["event"] for e in logs] == ["watch_events_lost"]
    rig.watcher.stop()
    rig.changes.clear()
    inotify_log.warning("Inotify queue overflowed; filesystem events were lost")
    assert rig.changes == []
    assert not inotify_log.handlers


def test_events_after_stop_are_dropped(rig: Rig) -> None:
    observer = rig.observers[-1]
    rig.watcher.stop()
    rig.watcher.stop()
    assert observer.stopped
    observer.emit(FileCreatedEvent(rig.p("late.js")))
    assert rig.changes == []
    assert not rig.watcher.alive()


@pytest.mark.parametrize(
    ("code", "limit"), [(errno.ENOSPC, "max_user_watches"), (errno.EMFILE, "max_user_instances")]
)
def test_an_exhausted_inotify_limit_falls_back_to_polling_with_one_line_of_advice(
    tmp_path: Path, code: int, limit: str
) -> None:
    rig = Rig(tmp_path)
    rig.fail["events"] = OSError(code, "inotify limit reached")
    with capture_logs() as logs:
        assert rig.watcher.start() == "polling"
    try:
        assert [o.mode for o in rig.observers] == ["events", "polling"]
        assert rig.observers[0].stopped and rig.observers[1].interval_s == 0.5
        fallbacks = [e for e in logs if e["event"] == "polling_fallback"]
        assert len(fallbacks) == 1
        assert f"fs.inotify.{limit}" in fallbacks[0]["reason"]
        assert f"sudo sysctl fs.inotify.{limit}=" in fallbacks[0]["hint"]
        assert [e["mode"] for e in logs if e["event"] == "watch_started"] == ["polling"]
        assert rig.emit(FileCreatedEvent(rig.p("a.js"))) == [touch("a.js")]
    finally:
        rig.watcher.stop()


def test_with_polling_never_an_exhausted_limit_is_an_error(tmp_path: Path) -> None:
    rig = Rig(tmp_path, polling="never")
    rig.fail["events"] = OSError(errno.ENOSPC, "inotify watch limit reached")
    with pytest.raises(OSError, match="watch limit"):
        rig.watcher.start()
    assert [o.mode for o in rig.observers] == ["events"]
    assert not rig.watcher.alive()


def test_other_errors_are_not_hidden_by_polling(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.fail["events"] = OSError(errno.EACCES, "permission denied")
    with pytest.raises(OSError, match="permission"):
        rig.watcher.start()


def test_a_folder_on_nfs_is_polled_and_says_why(tmp_path: Path) -> None:
    rig = Rig(tmp_path, fs="nfs4")
    with capture_logs() as logs:
        assert rig.watcher.start() == "polling"
    rig.watcher.stop()
    assert [o.mode for o in rig.observers] == ["polling"]
    assert any("nfs4" in e.get("reason", "") for e in logs if e["event"] == "polling_fallback")


def test_polling_always_and_never_override_the_file_system(tmp_path: Path) -> None:
    always = Rig(tmp_path / "a", polling="always")
    never = Rig(tmp_path / "n", polling="never", fs="nfs4")
    try:
        assert always.watcher.start() == "polling"
        assert never.watcher.start() == "events"
    finally:
        always.watcher.stop()
        never.watcher.stop()


# ------------------------------------------------------- symbolic links and hard links


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the watched one, as a shared stimulus folder."""
    path = tmp_path / "shared"
    (path / "sub").mkdir(parents=True)
    (path / "words.csv").write_text("red\n")
    return path.resolve()


def started_rig(rig: Rig) -> Rig:
    assert rig.watcher.start() == "events"
    return rig


def test_events_in_a_linked_folder_outside_are_reported_at_the_links_path(
    tmp_path: Path, outside: Path
) -> None:
    rig = Rig(tmp_path)
    os.symlink(outside, rig.folder / "stimuli")
    started_rig(rig)
    try:
        assert rig.watched() == {rig.root: ("events", True), str(outside): ("events", True)}
        assert rig.emit(
            FileModifiedEvent(str(outside / "words.csv")),
            FileCreatedEvent(str(outside / "sub" / "new.csv")),
            FileMovedEvent(str(outside / "words.csv"), str(outside / "colours.csv")),
            DirDeletedEvent(str(outside)),
        ) == [
            touch("stimuli/words.csv"),
            touch("stimuli/sub/new.csv"),
            gone("stimuli/words.csv"),
            done("stimuli/colours.csv"),
            gone("stimuli", is_dir=True),
        ]
        assert rig.watcher.not_followed == ()
    finally:
        rig.watcher.stop()


def test_events_in_a_folder_linked_from_inside_are_reported_at_every_path(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    (rig.folder / "real" / "deep").mkdir(parents=True)
    os.symlink("real", rig.folder / "js_link")
    os.symlink("real/deep", rig.folder / "deep_link")
    started_rig(rig)
    try:
        assert rig.watched() == {rig.root: ("events", True)}  # inside: watched already
        assert rig.emit(FileModifiedEvent(rig.p("real/deep/a.js"))) == [
            touch("deep_link/a.js"),
            touch("js_link/deep/a.js"),
            touch("real/deep/a.js"),
        ]
    finally:
        rig.watcher.stop()


def test_a_linked_file_outside_is_watched_through_its_folder_and_alone(
    tmp_path: Path, outside: Path
) -> None:
    rig = Rig(tmp_path)
    os.symlink(outside / "words.csv", rig.folder / "words.csv")
    started_rig(rig)
    try:
        assert rig.watched()[str(outside)] == ("events", False)
        assert rig.emit(
            FileModifiedEvent(str(outside / "words.csv")),
            FileModifiedEvent(str(outside / "other.csv")),  # not linked: not reported
        ) == [touch("words.csv")]
    finally:
        rig.watcher.stop()


def test_a_link_to_an_ancestor_or_a_loop_is_not_followed(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    (rig.folder / "sub").mkdir()
    os.symlink("..", rig.folder / "sub" / "up")
    os.symlink("me", rig.folder / "me")
    started_rig(rig)
    try:
        assert rig.watched() == {rig.root: ("events", True)}
        assert rig.emit(FileModifiedEvent(rig.p("sub/a.js"))) == [touch("sub/a.js")]
    finally:
        rig.watcher.stop()


def test_a_link_made_while_watching_is_followed_after_the_next_poll(
    tmp_path: Path, outside: Path
) -> None:
    rig = started_rig(Rig(tmp_path))
    try:
        os.symlink(outside, rig.folder / "stimuli")
        assert rig.emit(FileCreatedEvent(rig.p("stimuli"))) == [touch("stimuli")]
        rig.watcher.poll()
        assert str(outside) in rig.watched()
        # What changed in its target before it was watched is looked at again.
        assert rig.taken() == [touch("stimuli", is_dir=True)]
        os.unlink(rig.folder / "stimuli")
        assert rig.emit(FileDeletedEvent(rig.p("stimuli"))) == [gone("stimuli")]
        rig.watcher.poll()
        assert str(outside) not in rig.watched()
    finally:
        rig.watcher.stop()


def test_a_linked_folder_that_cannot_be_watched_is_named_in_not_followed(
    tmp_path: Path, outside: Path
) -> None:
    rig = Rig(tmp_path)
    rig.fail_paths[str(outside)] = PermissionError(13, "Permission denied")
    os.symlink(outside, rig.folder / "stimuli")
    with capture_logs() as logs:
        started_rig(rig)
    try:
        assert rig.watched() == {rig.root: ("events", True)}
        (problem,) = rig.watcher.not_followed
        assert problem.startswith(f"stimuli -> {outside}: cannot be watched (Permission denied)")
        assert "next full pass" in problem
        assert [e["event"] for e in logs if e["event"] == "link_not_followed"] == [
            "link_not_followed"
        ]
        del rig.fail_paths[str(outside)]
        rig.watcher.poll()
        assert rig.watcher.not_followed != ()  # not at once: tried again after a while
        rig.now += FolderWatcher.RETRY_NOT_FOLLOWED_S
        rig.watcher.poll()
        assert str(outside) in rig.watched() and rig.watcher.not_followed == ()
    finally:
        rig.watcher.stop()


def test_a_linked_folder_on_a_network_file_system_is_polled_beside_events(
    tmp_path: Path, outside: Path
) -> None:
    rig = Rig(tmp_path, mounts=((outside, "nfs4"),))
    os.symlink(outside, rig.folder / "stimuli")
    started_rig(rig)
    try:
        assert rig.watched() == {rig.root: ("events", True), str(outside): ("polling", True)}
        assert rig.watcher.alive()
        polling = next(o for o in rig.observers if o.mode == "polling")
        polling.emit(FileModifiedEvent(str(outside / "words.csv")))
        assert rig.taken() == [touch("stimuli/words.csv")]
    finally:
        rig.watcher.stop()
    assert all(o.stopped for o in rig.observers)


def test_a_file_with_another_name_is_touched_when_written_through_that_name(
    tmp_path: Path,
) -> None:
    other = tmp_path / "other-name.js"
    other.write_bytes(b"v1")
    rig = Rig(tmp_path)
    os.link(other, rig.folder / "linked.js")
    started_rig(rig)
    try:
        rig.watcher.poll()
        assert rig.taken() == []
        with other.open("r+b") as stream:  # same inode, no event in the folder
            stream.write(b"v2, longer")
        rig.watcher.poll()
        assert rig.taken() == [touch("linked.js")]
        rig.watcher.poll()
        assert rig.taken() == []
    finally:
        rig.watcher.stop()


def test_a_hard_link_made_while_watching_is_re_checked_from_then_on(tmp_path: Path) -> None:
    other = tmp_path / "other-name.js"
    other.write_bytes(b"v1")
    rig = started_rig(Rig(tmp_path))
    try:
        os.link(other, rig.folder / "linked.js")
        assert rig.emit(FileCreatedEvent(rig.p("linked.js"))) == [touch("linked.js")]
        other.write_bytes(b"v2, longer")
        rig.watcher.poll()
        assert rig.taken() == [touch("linked.js")]
    finally:
        rig.watcher.stop()


def test_an_event_that_cannot_be_translated_becomes_a_rescan(rig: Rig) -> None:
    class Odd(FileCreatedEvent):
        @property
        def event_type(self) -> str:  # type: ignore[override]
            raise RuntimeError("odd event")

    with capture_logs() as logs:
        assert rig.emit(Odd(rig.p("a.js"))) == [Change("rescan")]
    assert [e["event"] for e in logs] == ["watch_event_failed"]
    assert rig.emit(FileCreatedEvent(rig.p("b.js"))) == [touch("b.js")]
