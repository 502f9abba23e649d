"""Study codes and participant links on the stand-in (docs/jatos-api.md §13): generating codes
per version, `/studyCodes/{code}`, opening links, the entry page, the control API and the
`participant` command line."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from jatos_sync.testing import RunError
from jatos_sync.testing.__main__ import _parser
from jatos_sync.testing.__main__ import main as serve_main
from jatos_sync.testing.control import _is_loopback
from jatos_sync.testing.participant import run as participant_run
from tests.test_testing_studies import ALL, Factory, Jatos, imported


@pytest.fixture(params=ALL)
def jatos(request: pytest.FixtureRequest, jatos_standin_factory: Factory) -> Iterator[Jatos]:
    client = Jatos(jatos_standin_factory(personality=request.param))
    yield client
    client.close()


@pytest.fixture
def make_jatos(jatos_standin_factory: Factory) -> Iterator[Callable[..., Jatos]]:
    clients: list[Jatos] = []

    def make(**kwargs: Any) -> Jatos:
        client = Jatos(jatos_standin_factory(**kwargs))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def _study(jatos: Jatos) -> dict[str, Any]:
    return imported(jatos)


def codes(jatos: Jatos, sid: int, query: str, **kw: Any) -> requests.Response:
    method = "POST" if jatos.v310 else "GET"
    return jatos.request(method, f"studies/{sid}/studyCodes{query}", **kw)


def open_link(jatos: Jatos, code: str, query: str = "", **kw: Any) -> requests.Response:
    return requests.get(f"{jatos.server.url}/publix/{code}{query}", timeout=10, **kw)


# ============================================================================ generating codes


def test_personal_codes_are_new_each_call_general_ones_one_per_batch_and_type(jatos: Jatos) -> None:
    sid = _study(jatos)["id"]
    first = codes(jatos, sid, "?type=pm&amount=3").json()
    assert first["apiVersion"] == jatos.server.api_version
    assert len(first["data"]) == 3 and all(len(c) == 11 and c.isalnum() for c in first["data"])
    assert codes(jatos, sid, "?type=PersonalSingle").json()["data"][0] not in first["data"]
    general = codes(jatos, sid, "?type=gm&amount=5").json()["data"]
    assert len(general) == 1
    assert codes(jatos, sid, "?type=GeneralMultiple").json()["data"] == general
    assert codes(jatos, sid, "?type=gs").json()["data"] != general


def test_classic_codes_need_a_type_and_tolerate_odd_amounts(
    make_jatos: Callable[..., Jatos],
) -> None:
    for name in ("3.8.2", "3.9"):
        jatos = make_jatos(personality=name)
        sid = _study(jatos)["id"]
        assert (codes(jatos, sid, "").status_code, codes(jatos, sid, "").text) == (
            400,
            "bad request",
        )
        r = codes(jatos, sid, "?type=robot")
        assert (r.status_code, r.text) == (400, "Unknown worker type")
        assert (codes(jatos, sid, "?type=ja").status_code) == 400
        assert len(codes(jatos, sid, "?type=ps&amount=0").json()["data"]) == 1
        assert codes(jatos, sid, "?type=pm&batchId=999").status_code == 500
        jatos.server.set_locked(sid, True)
        assert codes(jatos, sid, "?type=pm").status_code == 200  # lock ignored


def test_classic_comments_are_url_decoded_3_10_ones_are_not(jatos: Jatos) -> None:
    sid = _study(jatos)["id"]
    code = codes(jatos, sid, "?type=pm&comment=wave%2B1%2521").json()["data"][0]
    srid = int(open_link(jatos, code).headers["X-Standin-Study-Result"])
    jatos.server.start_component(srid)
    meta = jatos.get(f"results/metadata?studyResultId={srid}").json()["data"][0]["studyResults"][0]
    if jatos.name == "3.8.2":
        assert "comment" not in meta  # 3.9+ only
    elif jatos.name == "3.9":
        assert meta["comment"] == "wave 1!"  # decoded once more by JATOS
    else:
        assert meta["comment"] == "wave+1%21"


def test_codes_batch_id_is_not_checked_against_the_study_before_3_10(jatos: Jatos) -> None:
    sid = _study(jatos)["id"]
    server = jatos.server
    server.add_user("bob")
    bobs = server.add_study("Bob's", members=["bob"])
    assert bobs.default_batch is not None
    r = codes(jatos, sid, f"?type=pm&batchId={bobs.default_batch.id}")
    if jatos.v310:
        assert (r.status_code, r.json()["error"]["code"]) == (403, "NO_ACCESS")
    else:
        assert r.status_code == 200


def test_3_10_codes_read_the_body_and_validate(make_jatos: Callable[..., Jatos]) -> None:
    jatos = make_jatos(personality="3.10")
    sid = _study(jatos)["id"]
    rest = f"studies/{sid}/studyCodes"
    r = jatos.request("POST", rest, json={"type": "pm", "amount": 2, "comment": "w1"})
    assert len(r.json()["data"]) == 2
    r = jatos.request("POST", rest + "?amount=1", json={"type": "pm", "amount": 4})
    assert len(r.json()["data"]) == 1  # the query wins
    assert jatos.request("GET", rest + "?type=pm").status_code == 200  # deprecated GET
    cases = [
        ({}, 400, "VALIDATION_ERROR", "Error in field 'type' - Invalid type"),
        ({"type": "robot"}, 400, "VALIDATION_ERROR", "Unknown type"),
        ({"type": "ja"}, 400, "UNSPECIFIED", "Unknown type"),
        ({"type": "pm", "amount": 0}, 400, "VALIDATION_ERROR", None),
        ({"type": "pm", "amount": 1001}, 400, "VALIDATION_ERROR", None),
        ({"type": "pm", "comment": "<b>hi</b>"}, 400, "VALIDATION_ERROR", None),
        ({"type": "pm", "amount": "two"}, 400, "INVALID_REQUEST", None),
        ({"type": "pm", "batchId": 999}, 404, "NOT_FOUND", "Batch doesn't exist."),
    ]
    for body, status, code, message in cases:
        r = jatos.request("POST", rest, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), body
        if message is not None:
            assert r.json()["error"]["message"] == message


def test_3_10_study_code_info_and_deactivation(make_jatos: Callable[..., Jatos]) -> None:
    jatos = make_jatos(personality="3.10", prefix="/pfx")
    sid = _study(jatos)["id"]
    code = codes(jatos, sid, "?type=ps&comment=c").json()["data"][0]
    info = jatos.get(f"studyCodes/{code}").json()["data"]
    batch_id = jatos.properties(sid)["batches"][0]["id"]
    assert info == {
        "studyCode": code,
        "batchId": batch_id,
        "type": "PersonalSingle",
        "comment": "c",
        "active": True,
        "studyLinkPath": f"/pfx/publix/{code}",
        "studyEntryPath": f"/pfx/publix/run?code={code}",
    }
    r = jatos.request("PATCH", f"studyCodes/{code}", json={"active": False})
    assert r.json()["data"]["active"] is False
    r = open_link(jatos, code)
    assert (r.status_code, r.text) == (403, "This study link is inactive")
    assert (
        jatos.request("PATCH", f"studyCodes/{code}", json={}).json()["error"]["code"]
        == "INVALID_REQUEST"
    )
    assert jatos.get("studyCodes/nope").json()["error"]["message"] == "Study code doesn't exist."
    general = codes(jatos, sid, "?type=gm").json()["data"][0]
    assert (
        jatos.get(f"studyCodes/{general}").status_code == 500
    )  # no worker: a NullPointerException


# ============================================================================ opening links


def test_opening_a_link_starts_a_run_and_keeps_the_query(jatos: Jatos) -> None:
    sid = _study(jatos)["id"]
    code = codes(jatos, sid, "?type=pm").json()["data"][0]
    r = open_link(jatos, code, "?PROLIFIC_PID=abc")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    (run,) = jatos.server.study_results(sid)
    assert r.headers["X-Standin-Study-Result"] == str(run.id)
    assert f'data-study-result-id="{run.id}"' in r.text
    assert (run.state, run.worker_type, run.study_code) == ("STARTED", "PersonalMultiple", code)
    assert run.url_query_parameters == {"PROLIFIC_PID": "abc"}
    assert run.end_ms is None


def test_unknown_inactive_and_disallowed_links_are_refused(jatos: Jatos) -> None:
    data = _study(jatos)
    sid, batch_id = data["id"], data["batches"][0]["id"]
    r = open_link(jatos, "nonexisting1")
    assert (r.status_code, r.text) == (400, "No valid study link")
    general = codes(jatos, sid, "?type=gs").json()["data"][0]
    r = open_link(jatos, general)
    assert r.status_code == 403
    assert r.text == (
        f"It's not allowed to run this study (ID: {sid}) in this batch (ID: {batch_id}) with a "
        'worker of type "GeneralSingle".'
    )
    r = open_link(jatos, general, headers={"Accept": "text/html"})
    assert r.status_code == 403 and "<h1>" in r.text
    jatos.server.set_allowed_worker_types(batch_id, ["gs"])
    assert open_link(jatos, general).status_code == 200
    assert open_link(jatos, general).status_code == 200  # a new general worker each time
    workers = {run.worker_id for run in jatos.server.study_results(sid)}
    assert len(workers) == 2


def test_a_personal_single_link_runs_only_once(jatos: Jatos) -> None:
    sid = _study(jatos)["id"]
    code = codes(jatos, sid, "?type=ps").json()["data"][0]
    entry = requests.get(f"{jatos.server.url}/publix/run?code={code}", timeout=10)
    assert entry.status_code == 200 and 'data-valid="true"' in entry.text
    assert open_link(jatos, code).status_code == 200
    r = open_link(jatos, code)
    assert (r.status_code, r.text) == (403, "Study can be done only once.")
    entry = requests.get(f"{jatos.server.url}/publix/run?code={code}", timeout=10)
    assert entry.status_code == 200 and "This study link is valid only once." in entry.text
    entry = requests.get(f"{jatos.server.url}/publix/run?code=nope", timeout=10)
    assert 'data-valid="false"' in entry.text and "No valid study code" in entry.text


def test_inactive_study_or_batch_and_the_worker_limit_refuse_runs(
    make_jatos: Callable[..., Jatos],
) -> None:
    jatos = make_jatos(personality="3.10")
    data = _study(jatos)
    sid = data["id"]
    batch = jatos.server._state.batches[data["batches"][0]["id"]]
    code = codes(jatos, sid, "?type=pm").json()["data"][0]
    jatos.request("PATCH", f"studies/{sid}/properties", json={"active": False})
    assert open_link(jatos, code).text == f"The study (ID: {sid}) was deactivated by an admin."
    jatos.request("PATCH", f"studies/{sid}/properties", json={"active": True})
    batch.active = False
    assert open_link(jatos, code).text == f"The batch (ID: {batch.id}) is inactive."
    batch.active = True
    batch.max_total_workers = 1
    assert open_link(jatos, code).status_code == 200
    other = codes(jatos, sid, "?type=pm").json()["data"][0]
    r = open_link(jatos, other)
    assert r.status_code == 403 and "maximum number of workers" in r.text


# ============================================================================ runs from Python


def test_python_runs_follow_jatos_rules(make_jatos: Callable[..., Jatos]) -> None:
    jatos = make_jatos(personality="3.9")
    data = _study(jatos)
    server = jatos.server
    second = server.add_component(data["id"], "Second", reloadable=True)
    off = server.add_component(data["id"], "Off", active=False)
    run = server.start_run(data["id"], comment="pilot")
    first = server.start_component(run)
    server.put_data(run, "a")
    server.put_data(run, "b", append=True)
    again = server.start_component(run, second)
    assert (first.state, first.data) == ("FINISHED", "ab")
    reloaded = server.start_component(run, second.uuid)
    assert again.state == "RELOADED"
    with pytest.raises(RunError, match="not active"):
        server.start_component(run, off)
    server.finish_run(run, "thanks")
    assert (reloaded.state, run.state, run.message) == ("FINISHED", "FINISHED", "thanks")
    assert run.confirmation_code is not None and run.end_ms is not None
    with pytest.raises(RunError, match="already finished"):
        server.put_data(run, "late")
    other = server.start_run(data["id"])
    intro = server.start_component(other)
    with pytest.raises(RunError, match="not allowed to reload"):
        server.start_component(other, data["components"][0]["id"])
    assert (intro.state, other.state, other.confirmation_code) == ("FAIL", "FAIL", None)
    with pytest.raises(RunError, match="Invalid filename"):
        server.add_result_file(server.start_run(data["id"]), "../x", b"x")


def test_abort_purges_data_and_files_of_every_component_result(jatos: Jatos) -> None:
    data = _study(jatos)
    server = jatos.server
    server.add_component(data["id"], "Second")
    run = server.start_run(data["id"])
    done = server.start_component(run)
    server.put_data(run, "kept?")
    server.add_result_file(run, "a.txt", b"a")
    current = server.start_component(run)
    server.put_data(run, "current")
    assert done.state == "FINISHED"
    server.abort_run(run, "withdrawn")
    assert [(cr.state, cr.data) for cr in (done, current)] == [("ABORTED", None), ("ABORTED", None)]
    assert server.result_files(done) == {}
    assert (run.state, run.message) == ("ABORTED", "withdrawn")


# ============================================================================ control API and CLI


def test_control_api_needs_a_token_and_loopback() -> None:
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("::ffff:127.0.0.1")
    assert not _is_loopback("192.168.1.2") and not _is_loopback("")


def test_control_api_drives_a_run(make_jatos: Callable[..., Jatos]) -> None:
    jatos = make_jatos(personality="3.10")
    sid = _study(jatos)["id"]
    code = codes(jatos, sid, "?type=pm").json()["data"][0]
    srid = open_link(jatos, code).headers["X-Standin-Study-Result"]
    base = f"{jatos.server.url}/_standin/runs/{srid}"
    assert requests.post(base + "/start-component", json={}, timeout=10).status_code == 401
    s = jatos.session
    assert s.post(base + "/start-component", json={}, timeout=10).status_code == 200
    s.post(base + "/data", json={"data": "x"}, timeout=10)
    s.put(base + "/files/rec.webm", data=b"\x00\x01", timeout=10)
    r = s.post(base + "/finish", json={"message": "ok"}, timeout=10)
    assert r.json()["state"] == "FINISHED"
    assert r.json()["componentResults"][0]["dataSize"] == 1
    r = s.post(base + "/data", json={"data": "late"}, timeout=10)
    assert r.status_code == 403 and "already finished" in r.json()["error"]
    assert s.post(base + "/jump", json={}, timeout=10).status_code == 404


def test_participant_command_runs_a_study_through_a_link(
    make_jatos: Callable[..., Jatos],
    tmp_path: Path,
) -> None:
    jatos = make_jatos(personality="3.9")
    sid = _study(jatos)["id"]
    code = codes(jatos, sid, "?type=pm").json()["data"][0]
    upload = tmp_path / "rec.webm"
    upload.write_bytes(b"audio")
    env = {"JATOS_STANDIN_URL": jatos.server.url, "JATOS_TOKEN": jatos.token or ""}
    out, err = io.StringIO(), io.StringIO()
    args = ["participant", "run", code, "--data", "d1", "--file", str(upload), "--param", "a=b"]
    code_rc = participant_run(_parser().parse_args(args), environ=env, stdout=out, stderr=err)
    assert code_rc == 0, err.getvalue()
    shown = json.loads(out.getvalue())
    assert shown["state"] == "FINISHED"
    assert jatos.token is not None
    assert jatos.token not in out.getvalue() + err.getvalue()
    (run,) = jatos.server.study_results(sid)
    assert jatos.server.result_files(run.component_results[0]) == {"rec.webm": b"audio"}
    assert run.url_query_parameters == {"a": "b"}
    out, err = io.StringIO(), io.StringIO()
    rc = participant_run(
        _parser().parse_args(["participant", "open", "nope"]), environ=env, stdout=out, stderr=err
    )
    assert rc == 1 and err.getvalue() == "participant: 400: No valid study link\n"
    rc = participant_run(
        _parser().parse_args(["participant", "show", "1"]), environ={}, stdout=out, stderr=err
    )
    assert rc == 2


def test_serve_and_participant_from_the_shell(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "jatos_sync.testing", "serve", "--personality", "3.8.2"]
    command += ["--data", str(tmp_path), "--components", "2", "--worker-types", "pm", "gm"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = json.loads(proc.stdout.readline())
            assert line["personality"] == "3.8.2" and line["api_version"] == "1.0.0"
            assert len(line["component_ids"]) == 2
            assert line["study_link"] == f"{line['url']}/publix/{line['study_code']}"
            env = {"JATOS_STANDIN_URL": line["url"], "JATOS_TOKEN": line["token"], "PATH": ""}
            participant = [sys.executable, "-m", "jatos_sync.testing", "participant"]
            done = subprocess.run(
                [
                    *participant,
                    "run",
                    line["study_code"],
                    "--components",
                    "2",
                    "--data",
                    "x",
                    "--end",
                    "abort",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            run = json.loads(done.stdout)
            assert run["state"] == "ABORTED"
            assert [cr["state"] for cr in run["componentResults"]] == ["ABORTED", "ABORTED"]
            headers = {"Authorization": f"Bearer {line['token']}", "Accept": "application/json"}
            r = requests.get(
                f"{line['url']}/jatos/api/v1/studies/{line['study_id']}/studyCodes?type=gm",
                headers=headers,
                timeout=10,
            )
            general = r.json()["data"][0]
            done = subprocess.run(
                [*participant, "open", general],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["workerType"] == "GeneralMultiple"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_serve_refuses_an_unknown_worker_type(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        serve_main(["serve", "--worker-types", "robots"])
    assert "unknown worker type" in capsys.readouterr().err
