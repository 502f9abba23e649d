"""daemon/status.py: the status file that `jatos-sync status` reads while a daemon runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from jatos_sync.daemon.status import read_status
from jatos_sync.state import StateStore


def test_read_status_needs_a_running_daemon(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    assert read_status(store) is None
    store.status_dir().mkdir()
    store.status_path().write_text("{not json")
    assert read_status(store) is None
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    document = {
        "pid": int(done.stdout),
        "state": "running",
        "mappings": [{"name": "exp", "last_sync": "2030-01-01T00:00:00.000+00:00"}],
    }
    store.status_path().write_text(json.dumps(document))
    assert read_status(store) is None  # that process is gone
    document["pid"] = os.getpid()
    store.status_path().write_text(json.dumps(document))
    status = read_status(store, now=lambda: 1893456010.0)
    assert status is not None
    assert status["mappings"][0]["last_sync_age_s"] == 10.0
    assert status["mappings"][0]["oldest_pending_age_s"] is None
    document["state"] = "stopped"
    store.status_path().write_text(json.dumps(document))
    assert read_status(store) is None


def test_the_daemon_status_counts_server_files_never_synced_from_here(tmp_path: Path) -> None:
    from tests.daemon_lab import idle, make_lab, running, wait_for

    for lab in make_lab(tmp_path):
        lab.put("index.html", "<p>")
        lab.server.put_file(lab.studies["exp"], "from-the-gui.js", b"gui")
        with running(lab.daemon()):
            wait_for("the first pass", idle(lab))
            status = lab.mapping_status
            wait_for("the count", lambda: status().get("server_only") == 1)  # noqa: B023
        assert lab.files()["from-the-gui.js"] == b"gui"


def test_the_status_of_several_daemons_is_merged(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.status_dir().mkdir()
    parent = os.getppid()  # another live process, standing in for a second daemon
    for pid, name in ((os.getpid(), "one"), (parent, "two")):
        document = {"pid": pid, "state": "running", "mappings": [{"name": name}]}
        store.status_path(pid).write_text(json.dumps(document))
    status = read_status(store)
    assert status is not None
    assert sorted(status["pids"]) == sorted([os.getpid(), parent])
    assert sorted(m["name"] for m in status["mappings"]) == ["one", "two"]
