"""The results mirror in `jatos-sync watch` (daemon/results_worker.py): a thread of its own
per mapping with `results:`, paced by `every`, independent of the file sync both ways, and
visible in the status file, `jatos-sync status` and systemd's STATUS line."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jatos_sync.cli import main
from jatos_sync.config import Config
from jatos_sync.credentials import load_token
from jatos_sync.daemon.status import MappingStatus, ResultsStatus, status_document, summary
from jatos_sync.daemon.supervisor import Daemon
from jatos_sync.results import ResultsMirror
from tests.daemon_lab import FAST, Lab, client_factory, idle, make_lab, running, wait_for


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    for lab in make_lab(tmp_path):
        lab.server.add_component(lab.studies["exp"], "Intro", html_file_path="intro.html")
        yield lab


def results_config(lab: Lab, folder: Path, *, every_s: float = 0.2) -> Config:
    """The lab's configuration with `results:` on mapping "exp", paced faster than the
    30 s a configuration file allows."""
    lab.world.config_path.write_text(
        lab.world.config_path.read_text().replace(
            f"    study: {lab.studies['exp'].id}\n",
            f"    study: {lab.studies['exp'].id}\n    results:\n      folder: {folder}\n",
        )
    )
    config = lab.config()
    (mapping, *others) = config.mappings
    assert mapping.results is not None
    fast = dataclasses.replace(mapping.results, every_s=every_s)
    return dataclasses.replace(
        config, mappings=(dataclasses.replace(mapping, results=fast), *others)
    )


def daemon_for(lab: Lab, config: Config) -> Daemon:
    return Daemon(
        config,
        token=load_token(config.server, environ=lab.env),
        client_factory=client_factory,
        environ=lab.env,
        timings=FAST,
    )


def participant(lab: Lab, data: str, *, end: str = "finish") -> Any:
    run = lab.server.start_run(lab.studies["exp"].id)
    lab.server.start_component(run)
    lab.server.put_data(run, data)
    if end == "finish":
        lab.server.finish_run(run)
    elif end == "abort":
        lab.server.abort_run(run)
    return run


def results_status(lab: Lab) -> dict[str, Any]:
    found = lab.mapping_status().get("results")
    return found if isinstance(found, dict) else {}


def data_file(folder: Path, run: Any) -> Path:
    crid = run.component_results[0].id
    return folder / f"study_result_{run.id}" / f"comp-result_{crid}" / "data.txt"


# ============================================================================ in the daemon


def test_watch_mirrors_each_new_result_beside_the_file_sync(lab: Lab, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    first = participant(lab, "before the start")
    daemon = daemon_for(lab, results_config(lab, folder))
    with running(daemon):
        wait_for("the first results pass", lambda: data_file(folder, first).exists())
        later = participant(lab, "while watching")
        lab.put("index.html", "<p>edit</p>")
        wait_for("the new result", lambda: data_file(folder, later).exists())
        wait_for("the upload", lambda: lab.files() == {"index.html": b"<p>edit</p>"})
        withdrawn = participant(lab, "changed my mind", end="none")
        wait_for("the running result", lambda: data_file(folder, withdrawn).exists())
        lab.server.abort_run(withdrawn)
        wait_for("the withdrawal", lambda: not data_file(folder, withdrawn).exists())
        wait_for("the counts", lambda: results_status(lab).get("withdrawn") == 1)
        status = results_status(lab)
        assert (status["final"], status["running"], status["state"]) == (2, 0, "idle")
        assert status["folder"] == str(folder) and status["last_error"] is None
        assert isinstance(status["last_pass"], str) and status["last_pass_age_s"] >= 0
        assert "results: 2 final, 0 running, 1 withdrawn" in daemon._summary()

        out = io.StringIO()
        main(
            ["-c", str(lab.world.config_path), "status"],
            environ=lab.env,
            stdout=out,
            stderr=io.StringIO(),
        )
        assert f"results into {folder}: idle" in out.getvalue()
        assert "2 final, 0 running, 1 withdrawn" in out.getvalue()
    assert data_file(folder, later).read_text() == "while watching"


def test_a_results_problem_never_pauses_the_file_sync(lab: Lab, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the results folder's parent should be")
    participant(lab, "data")
    daemon = daemon_for(lab, results_config(lab, blocker / "data"))
    with running(daemon):
        wait_for("the results pause", lambda: results_status(lab).get("state") == "paused")
        assert "Cannot create the results folder" in results_status(lab)["last_error"]
        lab.put("a.js", "a")
        wait_for("the upload", lambda: lab.files() == {"a.js": b"a"})
        wait_for("the mapping idle", idle(lab))
        assert "1 with errors" in daemon._summary()
        blocker.unlink()
        blocker.mkdir()  # fixed: the next try (with backoff) writes the results
        wait_for("the results", lambda: results_status(lab).get("state") == "idle")
        assert results_status(lab)["final"] == 1


def test_a_paused_file_sync_never_stops_the_results(lab: Lab, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    lab.world.folder.rmdir()  # the synced folder is gone: the file sync pauses (rule 1)
    daemon = daemon_for(lab, results_config(lab, folder))
    run = participant(lab, "still mirrored")
    with running(daemon):
        wait_for("the pause", lambda: lab.mapping_status().get("state") == "paused")
        wait_for("the result", lambda: data_file(folder, run).exists())
        assert lab.mapping_status()["state"] == "paused"


def test_a_results_worker_that_dies_is_restarted(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "data"
    run = participant(lab, "x")
    real = ResultsMirror.run
    calls: list[int] = []

    def dies_once(self: ResultsMirror) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise SystemExit(3)  # not an Exception: it ends the thread
        return real(self)

    monkeypatch.setattr(ResultsMirror, "run", dies_once)
    daemon = daemon_for(lab, results_config(lab, folder))
    with running(daemon):
        wait_for("the restart", lambda: data_file(folder, run).exists())
        assert len(calls) >= 2
        assert daemon.workers_alive()


def test_a_reload_with_a_new_token_reaches_the_results_worker(lab: Lab, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    daemon = daemon_for(lab, results_config(lab, folder))
    with running(daemon):
        wait_for("the first pass", lambda: results_status(lab).get("state") == "idle")
        lab.server.revoke_token(lab.world.token)
        wait_for("the pause", lambda: results_status(lab).get("state") == "paused")
        assert "refused the token" in results_status(lab)["last_error"]
        run = participant(lab, "after the new token")
        lab.env["JATOS_TOKEN"] = lab.server.add_token("alice")
        lab.world.config_path.write_text(lab.world.config_path.read_text() + "\n")
        daemon.request_reload()
        wait_for("the result", lambda: data_file(folder, run).exists())


def test_a_stopped_daemon_reports_its_results_workers_stopped(lab: Lab, tmp_path: Path) -> None:
    daemon = daemon_for(lab, results_config(lab, tmp_path / "data"))
    with running(daemon):
        wait_for("the first pass", lambda: results_status(lab).get("state") == "idle")
    assert not daemon.results_workers["exp"].thread.is_alive()
    final = json.loads(max(lab.world.state_dir.glob("daemons/*.json")).read_text())
    assert final["state"] == "stopped" and final["mappings"][0]["results"]["state"] == "stopped"


# ============================================================================ the status


def test_the_status_document_and_line_show_results() -> None:
    mapping = MappingStatus("exp", "42", "/f", state="idle", last_sync=1000.0)
    mirror = ResultsStatus(
        folder="/data", state="idle", last_pass=940.0, final=5, running=1, withdrawn=2
    )
    document = status_document(
        [mapping, dataclasses.replace(mapping, name="other")],
        config_path=Path("/c.yaml"),
        started_at=0.0,
        now=10.0,
        wall=1000.0,
        results={"exp": mirror},
    )
    exp, other = document["mappings"]
    assert exp["results"] == {
        "folder": "/data",
        "state": "idle",
        "last_pass": "1970-01-01T00:15:40.000+00:00",
        "last_pass_age_s": 60.0,
        "last_error": None,
        "failing": 0,
        "final": 5,
        "running": 1,
        "withdrawn": 2,
        "deleted_on_server": 0,
    }
    assert other["results"] is None
    line = summary([mapping], wall=1000.0, results=[mirror])
    assert line.endswith("; results: 5 final, 1 running, 2 withdrawn, last pass 60 s ago")
    troubled = dataclasses.replace(mirror, state="paused", last_error="boom")
    assert summary([mapping], wall=1000.0, results=[troubled]).endswith(", 1 with errors")
    assert "results" not in summary([mapping], wall=1000.0)
