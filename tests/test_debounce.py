"""The debouncer: changes → batches of paths ready for a pass, with explicit times."""

from __future__ import annotations

import pytest

from jatos_sync.debounce import Batch, Debouncer
from jatos_sync.model import RelPath

P = RelPath


def make_debouncer() -> Debouncer:
    return Debouncer(debounce_s=0.3, delete_delay_s=2.0)


def test_a_burst_of_events_makes_the_path_ready_once_after_it_is_quiet() -> None:
    d = make_debouncer()
    for t in (0.0, 0.1, 0.2, 0.35):  # each event restarts the path's quiet period
        d.touch(P("a.js"), t)
    assert d.due(0.6) == Batch()
    assert d.due(0.65) == Batch(dirty=frozenset({P("a.js")}))
    assert d.due(5.0) == Batch()


def test_paths_wait_each_for_their_own_quiet_period() -> None:
    d = make_debouncer()
    d.touch(P("a.js"), 0.0)
    d.touch(P("b.js"), 0.2)
    assert d.due(0.3).dirty == {P("a.js")}
    assert d.due(0.4) == Batch()
    assert d.due(0.5).dirty == {P("b.js")}


def test_a_deletion_is_held_until_the_path_stayed_gone_for_the_delay() -> None:
    d = make_debouncer()
    d.gone(P("old.js"), 0.0)
    d.touch(P("new.js"), 0.0)
    batch = d.due(0.3)
    assert batch == Batch(dirty=frozenset({P("new.js")}), hold=frozenset({P("old.js")}))
    d.finish(batch, now=0.0)
    assert d.due(1.9) == Batch()
    assert d.due(2.0) == Batch(dirty=frozenset({P("old.js")}))


def test_a_file_that_reappears_is_looked_at_again_instead_of_deleted() -> None:
    d = make_debouncer()
    d.gone(P("index.html"), 0.0)  # an editor renames the original away …
    d.touch(P("index.html"), 0.01)  # … and writes the new version
    assert d.due(0.31) == Batch(dirty=frozenset({P("index.html")}))
    assert d.next_deadline() is None


def test_a_directory_that_reappears_still_holds_the_files_it_had() -> None:
    d = make_debouncer()
    d.gone(P("dist"), 0.0)
    d.touch(P("dist"), 0.1, is_dir=True)
    d.touch(P("dist/app.js"), 0.2)
    batch = d.due(0.5)
    assert batch.dirty == {P("dist"), P("dist/app.js")}
    assert batch.hold == {P("dist")}
    d.finish(batch, now=0.0)
    assert d.due(2.0).dirty == {P("dist")}


def test_a_temp_file_renamed_away_before_it_was_quiet_is_only_checked_after_the_delay() -> None:
    d = make_debouncer()
    d.touch(P("x.tmp"), 0.0)
    d.gone(P("x.tmp"), 0.1)
    assert d.due(0.5) == Batch()
    assert d.due(2.1).dirty == {P("x.tmp")}


def test_a_rescan_waits_for_a_quiet_folder_and_takes_everything_pending() -> None:
    d = make_debouncer()
    d.rescan(0.0)
    d.gone(P("dist/a.js"), 0.5)
    d.touch(P("dist/b.js"), 1.0)
    first = d.due(1.3)
    assert first == Batch(dirty=frozenset({P("dist/b.js")}), hold=frozenset({P("dist/a.js")}))
    d.finish(first, now=0.0)
    d.touch(P("dist/c.js"), 1.5)
    assert d.next_deadline(full_only=True) == pytest.approx(3.5)
    assert not d.due(3.4, full_only=True)
    d.due(1.8)  # c.js on its own
    assert d.due(3.5) == Batch(dirty=frozenset({P("dist/a.js")}), full_local=True)
    assert d.next_deadline(full_only=True) is None


def test_a_rescan_in_a_quiet_folder_is_due_after_the_debounce() -> None:
    d = make_debouncer()
    d.rescan(10.0)
    d.rescan(11.0)  # the earliest request counts
    assert d.next_deadline() == pytest.approx(10.3)
    assert d.due(10.3, full_only=True) == Batch(full_local=True)


def test_full_only_leaves_ordinary_paths_pending() -> None:
    d = make_debouncer()
    d.touch(P("a.js"), 0.0)
    assert d.due(1.0, full_only=True) == Batch()
    assert d.next_deadline(full_only=True) is None
    assert d.due(1.0).dirty == {P("a.js")}


def test_next_deadline_is_the_earliest_time_something_becomes_ready() -> None:
    d = make_debouncer()
    assert d.next_deadline() is None
    d.gone(P("a"), 0.0)
    d.touch(P("b"), 1.0)
    assert d.next_deadline() == pytest.approx(1.3)
    d.due(1.3)
    assert d.next_deadline() == pytest.approx(2.0)


def test_pending_paths_and_their_age_survive_a_failed_pass() -> None:
    d = make_debouncer()
    d.touch(P("a.js"), 1.0)
    d.touch(P("a.js"), 2.0)
    d.touch(P("b.js"), 3.0)
    assert (d.pending(), d.oldest_pending_since()) == (2, 1.0)
    batch = d.due(3.3)
    assert d.pending() == 2  # in the pass: still pending
    d.finish(batch, now=3.4, retry={P("a.js"): 10.0})
    assert (d.pending(), d.oldest_pending_since()) == (1, 1.0)
    assert d.due(9.9) == Batch()
    assert d.due(10.0).dirty == {P("a.js")}


def test_an_edit_during_a_pass_is_not_delayed_by_the_retry_time() -> None:
    d = make_debouncer()
    d.touch(P("a.js"), 0.0)
    batch = d.due(0.3)
    d.touch(P("a.js"), 0.4)  # edited again while the pass ran
    d.finish(batch, now=0.5, retry={P("a.js"): 60.0})
    assert d.due(0.7).dirty == {P("a.js")}


def test_reset_forgets_everything() -> None:
    d = make_debouncer()
    d.touch(P("a"), 0.0)
    d.gone(P("b"), 0.0)
    d.rescan(0.0)
    d.reset()
    assert (d.pending(), d.next_deadline()) == (0, None)


def test_a_write_that_has_ended_is_ready_at_once() -> None:
    # Closed after writing, or renamed into place: an editor's save is complete, and the
    # upload is the only wait left (the quiet time is for writers that keep files open).
    d = make_debouncer()
    d.touch(P("a.js"), 10.0)  # the write begins
    d.touch(P("a.js"), 10.01, settled=True)  # ...and ends
    assert d.next_deadline() == 10.01
    assert d.due(10.01) == Batch(dirty=frozenset({P("a.js")}))


def test_deletions_still_wait_even_when_a_write_ends_elsewhere() -> None:
    d = make_debouncer()
    d.gone(P("old.js"), 10.0)
    d.touch(P("new.js"), 10.0, settled=True)
    assert d.due(10.0) == Batch(dirty=frozenset({P("new.js")}), hold=frozenset({P("old.js")}))
    assert d.due(10.5) == Batch()
