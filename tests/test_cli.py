"""Every exit code listed in README, "Exit codes", produced by the real CLI with the right
message."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from jatos_sync.cli import main
from jatos_sync.client import JatosClient
from jatos_sync.testing import make_token
from tests.conftest import World


def test_bad_yaml_is_exit_2_with_file_and_line(world310: World) -> None:
    world310.config_path.write_text("server:\n  url: [unclosed\nmappings: []\n")
    result = world310.run("sync")
    assert result.code == 2
    assert "jatos-sync.yaml:2" in result.err or "jatos-sync.yaml:3" in result.err
    assert "Traceback" not in result.err


def test_unknown_key_is_exit_2_naming_the_key(world310: World) -> None:
    world310.write_config(mapping_extra="    ignroe: ['*.psd']\n")
    result = world310.run("sync")
    assert result.code == 2
    assert "ignroe" in result.err and "ignore" in result.err


def test_missing_config_file_says_how_to_make_one(tmp_path: Path) -> None:
    err = io.StringIO()
    code = main(
        ["-c", str(tmp_path / "nope.yaml"), "sync"], environ={}, stderr=err, stdout=io.StringIO()
    )
    assert code == 2
    assert "nope.yaml" in err.getvalue()


def test_missing_token_is_exit_2(world310: World) -> None:
    result = world310.run("sync", env={"JATOS_TOKEN": ""})
    assert result.code == 2
    assert "JATOS_TOKEN" in result.err


def test_malformed_token_is_caught_before_any_request(world310: World) -> None:
    good = world310.token
    typo = good[:-1] + ("0" if good[-1] != "0" else "1")
    result = world310.run("sync", env={"JATOS_TOKEN": typo})
    assert result.code == 2
    assert "checksum" in result.err or "mistyped" in result.err
    assert typo not in result.err and typo not in result.out
    assert world310.server.requests == []


def test_invalid_token_is_exit_3(world_any: World) -> None:
    result = world_any.run("sync", env={"JATOS_TOKEN": make_token()})
    assert result.code == 3
    assert "refused the token" in result.err


def test_expired_token_is_exit_3(world_any: World) -> None:
    world_any.server.expire_token(world_any.token)
    result = world_any.run("sync")
    assert result.code == 3
    assert "expired" in result.err


def test_not_a_member_is_exit_3(world_any: World) -> None:
    other = world_any.server.add_study("Someone else's", members=[])
    world_any.write_config(study=str(other.id))
    result = world_any.run("sync")
    assert result.code == 3
    assert "not a member" in result.err


def test_locked_study_is_exit_3_and_changes_nothing(world_any: World) -> None:
    world_any.put("a.js", "a")
    world_any.server.set_locked(world_any.study, True)
    result = world_any.run("sync")
    assert result.code == 3
    assert "locked" in result.out + result.err
    assert world_any.remote() == {}


def test_unknown_study_is_exit_2(world_any: World) -> None:
    world_any.write_config(study="999")
    result = world_any.run("sync")
    assert result.code == 2
    assert "no such study" in result.err + result.out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused_after_retries_is_exit_5(world310: World) -> None:
    world310.write_config(url=f"http://127.0.0.1:{_free_port()}")
    result = world310.run("sync")
    assert result.code == 5
    assert "Cannot reach JATOS" in result.err and "connection refused" in result.err


def test_a_burst_of_503_that_recovers_still_succeeds(world310: World) -> None:
    world310.config_path.write_text(
        world310.config_path.read_text().replace("retries: 1", "retries: 4")
    )
    world310.put("a.js", "a")
    world310.put("index.html", "<html></html>")
    world310.server.faults.fail_next(3, status=503)
    result = world310.run("sync")
    assert result.code == 0, result.err
    assert world310.remote() == world310.local()
    assert "http_retry" in result.err


def test_proxy_413_fails_that_file_only_exit_1(world310: World) -> None:
    world310.put("small.js", "s")
    world310.put("big.bin", b"x" * 50_000)
    world310.server.faults.proxy_max_body_bytes = 10_000
    result = world310.run("sync")
    assert result.code == 1
    assert "client_max_body_size" in result.out
    assert world310.remote() == {"small.js": b"s"}


def test_check_reports_version_owner_study_and_counts(world_any: World) -> None:
    world_any.put("a.js", "a")
    result = world_any.run("check")
    assert result.code == 0, result.out + result.err
    assert "Stroop" in result.out
    assert "local files: 1" in result.out and "server files: 0" in result.out
    assert "ok: ready to sync" in result.out


@pytest.mark.parametrize("wrong", ["999", "not-a-member"])
def test_check_lists_the_studies_the_token_can_reach_when_the_study_is_wrong(
    world_any: World, wrong: str
) -> None:
    other = world_any.server.add_study("Flanker", members=["alice"])
    ref = "999"
    if wrong == "not-a-member":
        world_any.server.add_user("bob")
        ref = str(world_any.server.add_study("Bob's study", members=["bob"]).id)
    world_any.write_config(study=ref)
    result = world_any.run("check")
    assert result.code in (2, 3)
    assert "The studies your token can reach" in result.out
    for study in (world_any.study, other):
        assert str(study.id) in result.out and study.uuid in result.out
        assert study.title in result.out
    assert "Bob's study" not in result.out
    doc = world_any.run("check", "--json").json
    (mapping,) = doc["mappings"]
    assert {s["id"] for s in mapping["reachable_studies"]} == {world_any.study.id, other.id}


def test_check_names_a_locked_study(world_any: World) -> None:
    world_any.server.set_locked(world_any.study, True)
    result = world_any.run("check")
    assert result.code == 3
    assert "locked" in result.out


def test_usage_error_is_exit_2() -> None:
    err = io.StringIO()
    assert main(["sync", "--bogus"], environ={}, stderr=err, stdout=io.StringIO()) == 2
    assert "unrecognized arguments" in err.getvalue()


@pytest.mark.timeout(60)
def test_console_script_runs_as_a_subprocess(world310: World) -> None:
    world310.put("a.js", "a")
    proc = subprocess.run(
        [sys.executable, "-m", "jatos_sync", "-c", str(world310.config_path), "sync", "--json"],
        env={"JATOS_TOKEN": world310.token, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert world310.remote() == {"a.js": b"a"}
    assert world310.token not in proc.stdout + proc.stderr
    assert '"upload_done"' in proc.stderr  # JSON log lines when not on a terminal


def test_jatos_381_gets_a_clear_message(tmp_path: Path) -> None:
    from tests.conftest import make_world

    for world in make_world(tmp_path, personality="3.8.1"):
        world.put("a.js", "a")
        result = world.run("sync")
        assert result.code == 2
        assert "3.8.2 or newer" in result.err + result.out
        assert world.remote() == {}


def test_a_url_that_is_not_jatos_is_exit_2(world310: World) -> None:
    world310.write_config(url=world310.server.url + "/not-jatos")
    result = world310.run("sync")
    assert result.code == 2
    assert "path prefix" in result.err


@pytest.mark.parametrize("command", ["sync", "status", "check", "pull"])
def test_an_unexpected_exception_is_one_line_exit_1_and_one_json_document(
    world310: World, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    def buggy(self: JatosClient) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr(JatosClient, "token_info", buggy)
    result = world310.run(command, "--json")
    assert result.code == 1
    assert result.json == {
        "ok": False,
        "exit_code": 1,
        "error": result.json["error"],
        "mappings": [],
    }
    assert result.json["error"].startswith("internal error: ValueError: a bug")
    lines = [line for line in result.err.splitlines() if line.startswith("jatos-sync:")]
    assert lines == [f"jatos-sync: {result.json['error']}"]
    assert "Traceback" not in result.err


def test_the_traceback_of_an_unexpected_exception_is_logged_only_with_v(
    world310: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def buggy(self: JatosClient) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr(JatosClient, "token_info", buggy)
    quiet = world310.run("sync")
    assert quiet.code == 1 and "Traceback" not in quiet.err
    verbose = world310.run("-v", "--log-format", "json", "sync")
    assert verbose.code == 1 and "Traceback" in verbose.err and "ValueError: a bug" in verbose.err


def test_ctrl_c_in_a_long_sync_says_how_far_it_got_and_how_to_finish(
    world_any: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world_any.write_config(server_extra="  concurrency: 1\n")
    for i in range(5):
        world_any.put(f"f{i}.js", f"// {i}\n")
    real = JatosClient.upload
    calls = []

    def upload(self: JatosClient, *args: object, **kwargs: object) -> object:
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(JatosClient, "upload", upload)
    result = world_any.run("sync")
    assert result.code == 130
    assert "interrupted after 2 of 5 files" in result.err
    assert "run `jatos-sync sync` again to finish" in result.err
    monkeypatch.setattr(JatosClient, "upload", real)
    again = world_any.run("sync", "--json")
    assert again.code == 0 and len(again.json["mappings"][0]["uploaded"]) == 3
