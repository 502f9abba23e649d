"""`jatos-sync results` end to end: the real CLI in process against the stand-in in its 3.8.2,
3.9 and 3.10 personalities, checked on the results folder file by file, on the requests
the server saw, the exit code and the message."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jatos_sync.client import JatosClient
from jatos_sync.config import load_config
from jatos_sync.credentials import Token
from jatos_sync.errors import ConfigError
from jatos_sync.results import TRIES, ResultsMirror, ResultsStopped
from jatos_sync.testing import StandInServer
from jatos_sync.testing.state import StudyResult
from tests.conftest import Run, World, assert_no_token, make_world


@dataclass
class Results:
    """A World whose mapping mirrors its study's results into `folder`."""

    world: World
    folder: Path
    components: list[Any]

    @property
    def server(self) -> StandInServer:
        return self.world.server

    def run(self, *args: str) -> Run:
        self.server.clear_requests()
        return self.world.run("results", *args)

    def run_json(self) -> tuple[Run, dict[str, Any]]:
        result = self.run("--json")
        document = json.loads(result.out)
        (mapping,) = document["mappings"]
        return result, mapping

    def participant(
        self,
        datas: list[str | None],
        *,
        files: dict[str, bytes] | None = None,
        end: str = "finish",
    ) -> StudyResult:
        """A participant's run through the components: data per component, files in the
        last; ended as `end` says ("finish", "fail", "abort" or "none")."""
        run = self.server.start_run(self.world.study.id)
        for data in datas:
            self.server.start_component(run)
            if data is not None:
                self.server.put_data(run, data)
        for name, content in (files or {}).items():
            self.server.add_result_file(run, name, content)
        if end == "finish":
            self.server.finish_run(run, "thanks")
        elif end == "fail":
            self.server.fail_run(run)
        elif end == "abort":
            self.server.abort_run(run)
        return run

    def tree(self) -> dict[str, bytes]:
        """Every file of the results folder but the record and the lock, by path."""
        return {
            p.relative_to(self.folder).as_posix(): p.read_bytes()
            for p in sorted(self.folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".jatos-sync-results")
        }

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """Each path's inode and modification time: a write shows as a change."""
        return {
            p.relative_to(self.folder).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(self.folder.rglob("*"))
        }

    def csv_rows(self) -> list[dict[str, str]]:
        with (self.folder / "results.csv").open(newline="", encoding="utf-8") as stream:
            return list(csv.DictReader(stream))

    def metadata_requests(self) -> int:
        return sum("/results/metadata" in r.path for r in self.server.requests)

    def zip_requests(self) -> int:
        return sum(r.path.endswith(("/results", "/results/data")) for r in self.server.requests)


@pytest.fixture(params=["3.8.2", "3.9", "3.10"])
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Results]:
    # The config lives in tmp_path/conf, so "../data/stroop" is tmp_path/data/stroop.
    yield from _lab(tmp_path, request.param)


@pytest.fixture
def lab310(tmp_path: Path) -> Iterator[Results]:
    yield from _lab(tmp_path, "3.10")


def _lab(tmp_path: Path, personality: str, extra: str = "") -> Iterator[Results]:
    for world in make_world(tmp_path, personality=personality):
        (tmp_path / "conf").mkdir()
        world.config_path = tmp_path / "conf" / "jatos-sync.yaml"
        components = [
            world.server.add_component(world.study, "Intro", html_file_path="intro.html"),
            world.server.add_component(world.study, "Stroop task", html_file_path="task.html"),
        ]
        world.write_config(mapping_extra=f"    results:\n      folder: ../data/stroop\n{extra}")
        yield Results(world, tmp_path / "data" / "stroop", components)


def base(run: StudyResult, index: int) -> str:
    return f"study_result_{run.id}/comp-result_{run.component_results[index].id}"


# ============================================================================ the first mirror


def test_the_first_mirror_lays_out_every_result_as_jatos_exports_them(lab: Results) -> None:
    finished = lab.participant(["intro data", "ünïcode task data"], files={"rec.webm": b"R" * 5000})
    failed = lab.participant(["failed halfway"], end="fail")
    running = lab.participant(["so far"], end="none")
    aborted = lab.participant(["withdrawn data", "more"], files={"x.txt": b"x"}, end="abort")

    result, mapping = lab.run_json()
    assert result.code == 0, result.err

    assert lab.tree() == {
        f"{base(finished, 0)}/data.txt": b"intro data",
        f"{base(finished, 1)}/data.txt": "ünïcode task data".encode(),
        f"{base(finished, 1)}/files/rec.webm": b"R" * 5000,
        f"{base(failed, 0)}/data.txt": b"failed halfway",
        f"{base(running, 0)}/data.txt": b"so far",
        "metadata.json": (lab.folder / "metadata.json").read_bytes(),
        "results.csv": (lab.folder / "results.csv").read_bytes(),
    }
    assert not (lab.folder / f"study_result_{aborted.id}").exists()

    # metadata.json is the server's metadata of the study, as fetched.
    saved = json.loads((lab.folder / "metadata.json").read_text())
    assert saved["apiVersion"] == lab.server.api_version
    (study,) = saved["data"]
    assert study["studyId"] == lab.world.study.id
    assert sorted(r["id"] for r in study["studyResults"]) == sorted(
        r.id for r in (finished, failed, running, aborted)
    )

    listed = [(int(r["study_result_id"]), int(r["component_result_id"])) for r in lab.csv_rows()]
    assert listed == sorted(listed)
    rows = {row["path"]: row for row in lab.csv_rows()}
    intro, task = rows[base(finished, 0)], rows[base(finished, 1)]
    assert intro["component_title"] == "Intro" and task["component_title"] == "Stroop task"
    assert (task["study_state"], task["component_state"], task["status"]) == (
        "FINISHED",
        "FINISHED",
        "final",
    )
    assert (task["data_size"], task["files"]) == (str(len("ünïcode task data".encode())), "1")
    assert task["worker_type"] == "PersonalMultiple" and task["batch_title"] == "Default"
    assert task["worker_id"] == str(finished.worker_id)
    assert task["start_time"].endswith("Z") and "T" in task["start_time"]
    assert rows[base(failed, 0)]["status"] == "final"
    assert rows[base(failed, 0)]["study_state"] == "FAIL"
    assert (rows[base(running, 0)]["status"], rows[base(running, 0)]["end_time"]) == ("running", "")
    assert [rows[base(aborted, i)]["status"] for i in (0, 1)] == ["withdrawn", "withdrawn"]
    assert [rows[base(aborted, i)]["data_size"] for i in (0, 1)] == ["0", "0"]
    assert len(rows) == 6

    assert sorted(mapping["new"]) == sorted(
        [base(finished, 0), base(finished, 1), base(failed, 0), base(running, 0)]
    )
    assert mapping["withdrawn"] == [base(aborted, 0), base(aborted, 1)]
    assert (mapping["updated"], mapping["unchanged"], mapping["failed"]) == ([], 0, [])
    assert mapping["results_folder"] == str(lab.folder)
    assert mapping["counts"] == {"final": 3, "running": 1, "withdrawn": 2, "deleted_on_server": 0}
    # One metadata request, the study's properties (component titles), one zip.
    assert (lab.metadata_requests(), lab.zip_requests(), len(lab.server.requests)) == (1, 1, 3)


def test_results_are_private_whatever_the_umask(lab310: Results) -> None:
    lab310.participant(["d"], files={"f.bin": b"f"})
    old = os.umask(0o002)
    try:
        assert lab310.run().code == 0
    finally:
        os.umask(old)
    for path in [lab310.folder, *lab310.folder.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path
    assert stat.S_IMODE(lab310.folder.parent.stat().st_mode) == 0o700  # created for it too


# ============================================================================ later passes


def test_a_second_pass_sends_one_request_and_writes_nothing(lab: Results) -> None:
    lab.participant(["a", "b"], files={"f.txt": b"f"})
    lab.participant(["idle"], end="none")  # a participant who stopped, run still open
    lab.participant(["w"], end="abort")
    assert lab.run().code == 0
    before = lab.snapshot()

    result, mapping = lab.run_json()
    assert result.code == 0, result.err
    assert len(lab.server.requests) == 1 and lab.metadata_requests() == 1
    assert lab.snapshot() == before
    assert (mapping["new"], mapping["updated"], mapping["withdrawn"]) == ([], [], [])
    assert mapping["unchanged"] == 4


def test_a_running_result_is_fetched_again_until_it_is_final(lab: Results) -> None:
    run = lab.participant(["first part"], end="none")
    assert lab.run().code == 0
    assert (lab.folder / base(run, 0) / "data.txt").read_bytes() == b"first part"

    lab.server.put_data(run, "; second part", append=True)
    _result, mapping = lab.run_json()
    assert mapping["updated"] == [base(run, 0)]
    assert (lab.folder / base(run, 0) / "data.txt").read_bytes() == b"first part; second part"
    assert lab.csv_rows()[0]["status"] == "running"

    lab.server.start_component(run)
    lab.server.put_data(run, "task")
    lab.server.add_result_file(run, "late.csv", b"1,2\n")
    lab.server.finish_run(run)
    _result, mapping = lab.run_json()
    assert mapping["updated"] == [base(run, 0)] and mapping["new"] == [base(run, 1)]
    assert lab.tree()[f"{base(run, 1)}/files/late.csv"] == b"1,2\n"
    assert [row["status"] for row in lab.csv_rows()] == ["final", "final"]
    assert lab.zip_requests() == 1

    lab.run()
    assert len(lab.server.requests) == 1  # final now: never fetched again


def test_an_abort_removes_the_local_data_and_files_of_the_whole_run(lab: Results) -> None:
    run = lab.participant(
        ["consent given", "answers"], files={"voice.webm": b"V" * 300}, end="none"
    )
    keep = lab.participant(["someone else"])
    assert lab.run().code == 0
    assert (lab.folder / base(run, 1) / "files" / "voice.webm").exists()

    lab.server.abort_run(run, "I withdraw")
    result, mapping = lab.run_json()
    assert result.code == 0, result.err
    assert mapping["withdrawn"] == [base(run, 0), base(run, 1)]
    assert not (lab.folder / f"study_result_{run.id}").exists()
    assert (lab.folder / base(keep, 0) / "data.txt").read_bytes() == b"someone else"
    rows = {row["path"]: row for row in lab.csv_rows()}
    assert [rows[base(run, i)]["status"] for i in (0, 1)] == ["withdrawn", "withdrawn"]
    assert [rows[base(run, i)]["files"] for i in (0, 1)] == ["0", "0"]
    assert "consent given" not in (lab.folder / "metadata.json").read_text()
    assert lab.zip_requests() == 0


def test_a_result_deleted_on_the_server_is_kept_and_marked(lab: Results) -> None:
    gone = lab.participant(["keep me"], files={"f.txt": b"file"})
    stays = lab.participant(["stays"])
    assert lab.run().code == 0
    before = lab.tree()
    gone_path, stays_path = base(gone, 0), base(stays, 0)

    lab.server.delete_results(gone)
    result, mapping = lab.run_json()
    assert result.code == 0, result.err
    assert mapping["deleted_on_server"] == [gone_path]
    after = lab.tree()
    assert {k: v for k, v in after.items() if k.startswith("study_")} == {
        k: v for k, v in before.items() if k.startswith("study_")
    }
    rows = {row["path"]: row for row in lab.csv_rows()}
    assert rows[gone_path]["status"] == "deleted_on_server"
    assert (rows[gone_path]["data_size"], rows[gone_path]["files"]) == ("7", "1")
    assert rows[stays_path]["status"] == "final"
    listed = json.loads(after["metadata.json"])["data"][0]["studyResults"]
    assert [r["id"] for r in listed] == [stays.id]

    lab.server.delete_results(stays)  # the study has no results at all any more
    result, mapping = lab.run_json()
    assert result.code == 0 and mapping["deleted_on_server"] == [stays_path]
    assert (lab.folder / stays_path / "data.txt").read_bytes() == b"stays"
    assert lab.run().code == 0 and len(lab.server.requests) == 1  # nothing new again


# ============================================================================ damaged zips


def test_a_truncated_zip_is_detected_retried_and_never_written_as_complete(lab: Results) -> None:
    runs = [lab.participant([f"data {i}"], files={"f.txt": b"%d" % i}) for i in range(3)]
    lab.server.faults.truncate_results_next(1, after_entries=2)
    result, mapping = lab.run_json()
    assert result.code == 0, result.err
    assert lab.zip_requests() == 2  # the cut zip, then a whole one
    assert len(mapping["new"]) == 3 and mapping["failed"] == []
    assert lab.tree()[f"{base(runs[2], 0)}/data.txt"] == b"data 2"

    more = lab.participant(["later"], files={"g.txt": b"g"})
    lab.server.faults.truncate_results_next(TRIES, after_entries=1)
    result, mapping = lab.run_json()
    assert result.code == 1
    assert lab.zip_requests() == TRIES
    assert [f["path"] for f in mapping["failed"]] == [f"study_result_{more.id}"]
    assert "not written" in mapping["failed"][0]["error"]
    assert not (lab.folder / f"study_result_{more.id}").exists()
    assert all(f"study_result_{more.id}/" not in row["path"] for row in lab.csv_rows())

    result = lab.run()  # the fault is over: the next pass completes it
    assert result.code == 0, result.out + result.err
    assert lab.tree()[f"{base(more, 0)}/files/g.txt"] == b"g"


def test_a_valid_but_partial_zip_writes_only_the_complete_results(lab310: Results) -> None:
    runs = [lab310.participant([f"data {i}"]) for i in range(3)]
    # JATOS closes the zip properly when its database fails mid-stream (docs/jatos-api.md §14.3).
    lab310.server.faults.truncate_results_next(1, after_entries=1, valid=True)
    lab310.server.faults.truncate_results_next(TRIES - 1, after_entries=0, valid=True)
    result, mapping = lab310.run_json()
    assert result.code == 1
    written = [p for p in lab310.tree() if p.endswith("data.txt")]
    assert len(written) == 1 and len(mapping["new"]) == 1 and len(mapping["failed"]) == 2
    result, mapping = lab310.run_json()
    assert result.code == 0 and len(mapping["new"]) == 2
    assert {lab310.tree()[f"{base(r, 0)}/data.txt"] for r in runs} == {
        b"data 0",
        b"data 1",
        b"data 2",
    }


def test_keep_alive_spaces_inside_the_zip_do_not_spoil_it(lab310: Results) -> None:
    # JATOS sends a space whenever the stream is silent for its keep-alive interval
    # (docs/jatos-api.md §14.3).
    lab310.server.keepalive_s = 0.05
    lab310.server.faults.results_stall_s = 0.12
    runs = [lab310.participant(["one", "two"], files={"f.txt": b"F"}), lab310.participant(["3"])]
    result, mapping = lab310.run_json()
    assert result.code == 0, result.out + result.err
    assert lab310.zip_requests() == 1 and len(mapping["new"]) == 3
    assert lab310.tree()[f"{base(runs[0], 1)}/files/f.txt"] == b"F"
    assert lab310.tree()[f"{base(runs[1], 0)}/data.txt"] == b"3"


# ============================================================================ where results go


@pytest.mark.parametrize("through_link", [False, True])
def test_a_results_folder_inside_the_synced_folder_is_refused(
    tmp_path: Path, through_link: bool
) -> None:
    for world in make_world(tmp_path, personality="3.10"):
        target = "data"
        if through_link:
            (tmp_path / "elsewhere").symlink_to(world.folder)
            target = str(tmp_path / "elsewhere" / "data")
        else:
            target = str(world.folder / "data")
        world.write_config(mapping_extra=f"    results:\n      folder: {target}\n")
        result = world.run("results")
        assert result.code == 2
        assert "mappings[0].results.folder" in result.err
        assert "inside the synced folder" in result.err
        assert ("symbolic link" in result.err) is through_link
        assert not (world.folder / "data").exists()
        assert world.server.requests == [] or all(
            "/results" not in r.path for r in world.server.requests
        )
        world.run("sync")  # and the asset sync refuses to start too
        assert world.remote() == {}


def test_a_results_folder_that_is_a_link_into_the_synced_folder_is_refused(
    lab310: Results,
) -> None:
    lab310.participant(["secret answers"])
    lab310.folder.parent.mkdir(parents=True)
    (lab310.world.folder / "public").mkdir()
    lab310.folder.symlink_to(lab310.world.folder / "public")
    result = lab310.run()
    assert result.code == 2
    assert "inside the synced folder" in result.out + result.err
    assert list((lab310.world.folder / "public").iterdir()) == []


def test_a_results_folder_that_became_a_link_after_the_start_is_refused(
    lab310: Results,
) -> None:
    # A daemon reads its configuration once and runs for weeks: every pass checks again.
    config = load_config(lab310.world.config_path)
    lab310.participant(["secret answers"])
    lab310.folder.parent.mkdir(parents=True)
    (lab310.world.folder / "public").mkdir()
    lab310.folder.symlink_to(lab310.world.folder / "public")
    with JatosClient.for_server(config.server, Token(lab310.world.token)) as client:
        outcome = ResultsMirror(
            config.mappings[0],
            client=client,
            synced=[(m.name, m.folder) for m in config.mappings],
            state_root=lab310.world.state_dir,
        ).run()
    assert isinstance(outcome.error, ConfigError)
    assert "mappings[0].results.folder" in str(outcome.error)
    assert "inside the synced folder" in str(outcome.error)
    assert list((lab310.world.folder / "public").iterdir()) == []
    assert lab310.server.requests == []


def test_a_results_folder_inside_the_state_folder_is_refused(tmp_path: Path) -> None:
    for world in make_world(tmp_path, personality="3.9"):
        world.write_config(mapping_extra=f"    results:\n      folder: {world.state_dir}/r\n")
        result = world.run("results")
        assert result.code == 2 and "inside the state folder" in result.err


def test_one_results_folder_for_two_mappings_is_refused(tmp_path: Path) -> None:
    for world in make_world(tmp_path, personality="3.10"):
        other = world.server.add_study("Other", members=["alice"])
        (tmp_path / "other").mkdir()
        world.write_config(
            mapping_extra=(
                f"    results:\n      folder: {tmp_path}/data\n"
                f"  - name: other\n    folder: {tmp_path}/other\n    study: {other.id}\n"
                f"    results:\n      folder: {tmp_path}/data/other\n"
            )
        )
        result = world.run("results")
        assert result.code == 2 and "mappings[1].results.folder" in result.err


def test_a_folder_with_another_studys_results_is_refused(lab310: Results) -> None:
    lab310.participant(["mine"])
    assert lab310.run().code == 0
    other = lab310.server.add_study("Another", members=["alice"])
    lab310.server.add_component(other, "C")
    run = lab310.server.start_run(other.id)
    lab310.server.start_component(run)
    lab310.server.put_data(run, "theirs")
    lab310.world.write_config(
        mapping_extra="    results:\n      folder: ../data/stroop\n", study=str(other.id)
    )
    before = lab310.tree()
    result = lab310.run()
    assert result.code == 2 and "holds the results of the study" in result.out
    assert lab310.tree() == before


# ============================================================================ the command


def test_a_locked_study_still_exports_its_results(lab: Results) -> None:
    run = lab.participant(["locked but readable"])
    lab.server.set_locked(lab.world.study, True)
    result = lab.run()
    assert result.code == 0, result.out + result.err
    assert lab.tree()[f"{base(run, 0)}/data.txt"] == b"locked but readable"


def test_result_data_never_appears_in_the_output_or_the_log(lab310: Results) -> None:
    lab310.participant(["PARTICIPANT-SECRET-ANSWER"], files={"secret-name.txt": b"FILE-SECRET"})
    result = lab310.world.run("-v", "results")
    assert result.code == 0
    for secret in ("PARTICIPANT-SECRET-ANSWER", "FILE-SECRET"):
        assert secret not in result.out + result.err
    for path in lab310.folder.rglob("*"):
        if path.is_file():
            assert_no_token(
                lab310.world.tokens_used, path.read_bytes().decode("latin-1"), str(path)
            )


def test_a_refused_token_is_exit_3_and_an_unreachable_server_exit_5(lab310: Results) -> None:
    result = lab310.world.run("results", env={"JATOS_TOKEN": lab310.server.add_token("alice")})
    assert result.code == 0
    lab310.server.revoke_token(lab310.world.token)
    result = lab310.run()
    assert result.code == 3 and "refused the token" in result.out
    lab310.world.write_config(
        mapping_extra="    results:\n      folder: ../data/stroop\n", url="http://127.0.0.1:9"
    )
    assert (
        lab310.world.run("results", env={"JATOS_TOKEN": lab310.server.add_token("alice")}).code == 5
    )


def test_without_files_only_the_data_is_fetched(tmp_path: Path) -> None:
    for lab in _lab(tmp_path, "3.9", extra="      files: false\n"):
        run = lab.participant(["d"], files={"big.bin": b"B" * 1000})
        result, _mapping = lab.run_json()
        assert result.code == 0, result.err
        assert sorted(lab.tree()) == ["metadata.json", "results.csv", f"{base(run, 0)}/data.txt"]
        assert any(r.path.endswith("/results/data") for r in lab.server.requests)
        assert lab.csv_rows()[0]["files"] == "0"


def test_only_mappings_with_results_are_mirrored_and_others_are_named(lab310: Results) -> None:
    result = lab310.world.run("results", "nope")
    assert result.code == 2 and "no mapping named 'nope'" in result.err
    lab310.world.write_config()
    result = lab310.world.run("results")
    assert result.code == 2 and "no mapping has a results: section" in result.err
    result = lab310.world.run("results", "exp")
    assert result.code == 2 and "has no results: section" in result.err


def test_a_damaged_record_is_rebuilt_and_everything_fetched_again(lab: Results) -> None:
    run = lab.participant(["x"], files={"f.txt": b"f"})
    gone = lab.participant(["deleted later"])
    assert lab.run().code == 0
    gone_path = base(gone, 0)
    lab.server.delete_results(gone)
    (lab.folder / ".jatos-sync-results.json").write_text("{broken")
    result, mapping = lab.run_json()
    assert result.code == 0, result.err
    assert mapping["updated"] == [base(run, 0)]
    rows = {row["path"]: row["status"] for row in lab.csv_rows()}
    assert rows == {base(run, 0): "final", gone_path: "deleted_on_server"}
    assert "results_record_rebuilt" in result.err
    assert lab.run().code == 0 and len(lab.server.requests) == 1


def test_the_human_summary_says_what_happened(lab310: Results) -> None:
    lab310.participant(["x"])
    lab310.participant(["y"], end="abort")
    result = lab310.run()
    assert "exp → study" in result.out
    assert "1 new, 0 updated, 1 withdrawn" in result.out
    assert "1 final, 0 running, 1 withdrawn" in result.out
    assert io.StringIO(result.out).readline().startswith("exp")


def test_the_results_keys_have_defaults_and_limits(tmp_path: Path) -> None:
    from jatos_sync.config import parse_config

    head = "server:\n  url: https://jatos.example.org\nmappings:\n  - folder: exp\n    study: 4\n"
    config = parse_config(head + "    results:\n      folder: ../data\n", path=tmp_path / "c.yaml")
    results = config.mappings[0].results
    assert results is not None
    assert (results.folder, results.every_s, results.files) == (tmp_path.parent / "data", 300, True)
    assert results.where == f"{tmp_path / 'c.yaml'}:7: mappings[0].results.folder"
    config = parse_config(
        head + "    results:\n      folder: d\n      every: 1h\n      files: false\n",
        path=tmp_path / "c.yaml",
    )
    assert config.mappings[0].results is not None
    assert (config.mappings[0].results.every_s, config.mappings[0].results.files) == (3600, False)
    with pytest.raises(ConfigError, match=r"c.yaml:8: mappings\[0\].results.every: expected a"):
        parse_config(
            head + "    results:\n      folder: d\n      every: 10s\n", path=tmp_path / "c.yaml"
        )
    with pytest.raises(ConfigError, match=r"mappings\[0\].results.folder: required key is missing"):
        parse_config(head + "    results:\n      every: 1m\n", path=tmp_path / "c.yaml")
    assert parse_config(head, path=tmp_path / "c.yaml").mappings[0].results is None


def test_the_demo_shows_a_participant_run_arriving_in_the_results_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jatos_sync.cli import main

    monkeypatch.chdir(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    code = main(["demo", "--once"], environ={}, stdout=out, stderr=err)
    text = out.getvalue()
    assert code == 0, text + err.getvalue()
    assert "A participant opens the study link http://127.0.0.1:" in text
    # the consent page and the task: two component results of one finished run
    assert "2 new, 0 updated, 0 withdrawn" in text and "2 final, 0 running" in text
    path = Path(text.split("Their task data is in ", 1)[1].split(" ", 1)[0])
    assert path.name == "data.txt" and path.parent.name.startswith("comp-result_")
    assert not path.exists()  # in the demo's temporary folder, removed at its end
    assert "jatos-sync results" in text.split("To do the same", 1)[1]
    assert os.listdir(tmp_path) == []


def test_a_stopped_pass_writes_nothing_half_and_leftovers_go(lab310: Results) -> None:
    run = lab310.participant(["x" * 5000], files={"f.bin": b"F" * 5000})
    config = load_config(lab310.world.config_path)
    stop = threading.Event()
    stop.set()
    with JatosClient.for_server(config.server, Token(lab310.world.token)) as client:
        mirror = ResultsMirror(
            config.mappings[0], client=client, state_root=lab310.world.state_dir, stop=stop
        )
        outcome = mirror.run()
    assert isinstance(outcome.error, ResultsStopped)
    assert not (lab310.folder / f"study_result_{run.id}").exists()
    # A killed process leaves its temporary files; the next write of the same file removes
    # them, and a temporary zip goes at the start of the next download.
    stale = lab310.folder / base(run, 0) / ".data.txt.k1ll3d.part"
    stale.parent.mkdir(parents=True)
    stale.write_text("half")
    (lab310.folder / ".jatos-sync-download-k1ll3d.zip").write_text("half")
    assert lab310.run().code == 0
    names = {p.name for p in lab310.folder.rglob("*")}
    assert "data.txt" in names and not any(n.endswith((".part", ".zip")) for n in names)


def test_one_writer_at_a_time_per_results_folder(lab310: Results) -> None:
    from jatos_sync.results import folder_lock

    lab310.participant(["x"])
    lab310.folder.mkdir(parents=True)
    with folder_lock(lab310.folder):  # as a `watch` daemon's results pass would hold it
        result = lab310.run()
    assert result.code == 4
    assert "Another jatos-sync is writing into the results folder" in result.out
    assert sorted(p.name for p in lab310.folder.iterdir()) == []
    assert lab310.run().code == 0
