"""Results on the stand-in (docs/jatos-api.md §14): selectors, metadata per version, streamed
zips and their faults, plain-text data, single files, deletion, IDs and order."""

from __future__ import annotations

import io
import itertools
import json
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from jatos_sync.testing.server import StandInServer
from jatos_sync.testing.state import ComponentResult, StudyResult
from jatos_sync.testing.views import duration_pretty, human_bytes
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


def _run(
    server: StandInServer,
    study_id: int,
    datas: list[str | None],
    *,
    files: dict[str, bytes] | None = None,
    end: str = "finish",
) -> StudyResult:
    """A run through the components, data per component (None: none), files in the last."""
    run = server.start_run(study_id)
    for data in datas:
        server.start_component(run)
        if data is not None:
            server.put_data(run, data)
    for name, content in (files or {}).items():
        server.add_result_file(run, name, content)
    if end == "finish":
        server.finish_run(run, "done")
    elif end == "abort":
        server.abort_run(run)
    return run


def _study(jatos: Jatos, components: int = 2) -> int:
    data = imported(jatos)
    for i in range(1, components):
        jatos.server.add_component(data["id"], f"C{i}", html_file_path=f"c{i}.html")
    return int(data["id"])


def _zip(r: requests.Response) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(r.content))


def _crids(meta: dict[str, Any]) -> list[int]:
    return [
        cr["id"] for s in meta["data"] for sr in s["studyResults"] for cr in sr["componentResults"]
    ]


# =========================================================== metadata (docs/jatos-api.md §14.2)


def test_metadata_has_each_versions_keys_and_types(jatos: Jatos) -> None:
    sid = _study(jatos)
    server = jatos.server
    done = _run(server, sid, ["x" * 1234, ""], files={"audio.webm": b"a" * 52311})
    running = _run(server, sid, [None], end="none")
    running.group_id = 7  # as a group study would set it
    r = jatos.get(f"results/metadata?studyId={sid}")
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(r.content))
    assert r.headers["Content-Disposition"].startswith(
        'attachment; filename="jatos_results_metadata_'
    )
    body = r.json()
    assert body["apiVersion"] == server.api_version
    (study,) = body["data"]
    assert (study["studyId"], study["studyTitle"]) == (sid, "Demo study")
    by_id = {sr["id"]: sr for sr in study["studyResults"]}
    finished, open_run = by_id[done.id], by_id[running.id]
    for key in (
        "id",
        "uuid",
        "studyCode",
        "startDate",
        "endDate",
        "duration",
        "lastSeenDate",
        "studyState",
        "workerId",
        "workerType",
        "batchId",
        "batchUuid",
        "batchTitle",
        "groupId",
        "componentResults",
    ):
        assert key in finished and key in open_run
    assert (finished["studyState"], finished["message"], finished["duration"]) == (
        "FINISHED",
        "done",
        "00:00:00",
    )
    assert isinstance(finished["startDate"], int) and finished["startDate"] > 1_600_000_000_000
    assert isinstance(finished["confirmationCode"], str)
    assert (open_run["endDate"], open_run["duration"], open_run["studyState"]) == (
        None,
        None,
        "STARTED",
    )
    assert not {"message", "confirmationCode", "urlQueryParameters", "comment"} & set(open_run)
    first, second = sorted(finished["componentResults"], key=lambda cr: cr["id"])
    assert first["data"] == {"size": 1234, "sizeHumanReadable": "1.2 kB"}
    assert second["data"] == {"size": 0, "sizeHumanReadable": "0 B", "filename": "data.txt"}
    assert second["files"] == [
        {"filename": "audio.webm", "size": 52311, "sizeHumanReadable": "52.3 kB"}
    ]
    assert first["files"] == []
    assert first["path"] == f"/study_result_{done.id}/comp-result_{first['id']}"
    if jatos.name == "3.8.2":
        assert open_run["groupId"] == "7"
        assert "isQuotaReached" not in finished and "isQuotaReached" not in first
    else:
        assert open_run["groupId"] == 7
        assert finished["isQuotaReached"] is False and first["isQuotaReached"] is False


def test_metadata_path_uses_the_servers_separator_before_3_10(
    make_jatos: Callable[..., Jatos],
) -> None:
    for name in ("3.9", "3.10"):
        jatos = make_jatos(personality=name, path_separator="\\")
        run = _run(jatos.server, _study(jatos, 1), ["d"])
        meta = jatos.get(f"results/metadata?studyResultId={run.id}").json()
        cr = meta["data"][0]["studyResults"][0]["componentResults"][0]
        sep = "/" if name == "3.10" else "\\"
        assert cr["path"] == f"{sep}study_result_{run.id}{sep}comp-result_{cr['id']}"


def test_data_size_counts_characters_on_h2_and_bytes_on_mysql(
    make_jatos: Callable[..., Jatos],
) -> None:
    for database, size in (("h2", 3), ("mysql", 6)):
        jatos = make_jatos(personality="3.10", database=database)
        run = _run(jatos.server, _study(jatos, 1), ["äöü"])
        meta = jatos.get(f"results/metadata?studyResultId={run.id}").json()
        assert meta["data"][0]["studyResults"][0]["componentResults"][0]["data"]["size"] == size


def test_metadata_without_api_version_and_without_download_on_3_10(
    make_jatos: Callable[..., Jatos],
) -> None:
    jatos = make_jatos(personality="3.10")
    run = _run(jatos.server, _study(jatos, 1), ["d"])
    r = jatos.get(f"results/metadata?studyResultId={run.id}&isApiCall=false&download=false")
    assert "apiVersion" not in r.json()
    assert "Content-Disposition" not in r.headers


def test_metadata_of_a_foreign_study_is_403_for_the_whole_request(jatos: Jatos) -> None:
    sid = _study(jatos, 1)
    server = jatos.server
    mine = _run(server, sid, ["m"])
    server.add_user("bob")
    other = server.add_study("Bob's", members=["bob"])
    server.add_component(other)
    theirs = _run(server, other.id, ["t"])
    r = jatos.get(f"results/metadata?studyResultId={mine.id}&studyResultId={theirs.id}")
    assert r.status_code == 403
    r = jatos.get(f"results?studyResultId={mine.id}&studyResultId={theirs.id}")
    assert r.status_code == 200  # the stream just ends: a valid zip without metadata.json
    assert "metadata.json" not in _zip(r).namelist()


def test_duration_and_human_readable_sizes() -> None:
    assert duration_pretty(0, 3_723_000) == "01:02:03"
    assert duration_pretty(0, 90_061_000) == "1:01:01:01"
    assert duration_pretty(5, None) is None
    assert [human_bytes(n) for n in (0, 999, 1000, 1_234_567)] == [
        "0 B",
        "999 B",
        "1.0 kB",
        "1.2 MB",
    ]


# ========================================================== selectors (docs/jatos-api.md §14.1)


def test_query_and_json_selectors_are_unioned(jatos: Jatos) -> None:
    sid = _study(jatos, 1)
    runs = [_run(jatos.server, sid, [f"d{i}"]) for i in range(4)]
    crs = [run.component_results[0].id for run in runs]
    body = {"componentResultIds": f"{crs[0]}, {crs[1]}-{crs[1]}"}
    r = jatos.request("POST", f"results/metadata?studyResultId={runs[2].id}", json=body)
    assert sorted(_crids(r.json())) == crs[:3]
    r = jatos.request(
        "POST", "results/metadata", json={"studyResultIds": [runs[3].id], "batchIds": None}
    )
    assert _crids(r.json()) == [crs[3]]
    r = jatos.request("POST", "results/metadata", json={"studyIds": sid})
    assert sorted(_crids(r.json())) == crs


def test_a_json_body_without_the_json_content_type_is_ignored(jatos: Jatos) -> None:
    sid = _study(jatos, 1)
    _run(jatos.server, sid, ["d"])
    r = jatos.request(
        "POST",
        "results/metadata",
        data=json.dumps({"studyIds": sid}),
        headers={"Content-Type": "text/plain"},
    )
    assert r.status_code == 200 and r.json()["data"] == []


def test_component_uuids_read_the_study_uuids_before_3_10(jatos: Jatos) -> None:
    sid = _study(jatos, 1)
    run = _run(jatos.server, sid, ["d"])
    component_uuid = jatos.properties(sid)["components"][0]["uuid"]
    r = jatos.request("POST", "results/metadata", json={"componentUuids": [component_uuid]})
    if jatos.v310:
        assert _crids(r.json()) == [run.component_results[0].id]
        return
    assert r.status_code == 500  # studyUuids absent: NullPointerException
    body = {"componentUuids": [component_uuid], "studyUuids": []}
    assert _crids(jatos.request("POST", "results/metadata", json=body).json()) == []
    r = jatos.get(f"results/metadata?componentUuid={component_uuid}")  # the query is fine
    assert _crids(r.json()) == [run.component_results[0].id]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"studyIds": 1.5}, "Malformed JSON"),
        ({"studyUuids": 5}, "Malformed JSON"),
        ({"studies": [1]}, "Unknown field studies"),
    ],
)
def test_malformed_selectors_are_400(jatos: Jatos, body: dict[str, Any], message: str) -> None:
    r = jatos.request("POST", "results/metadata", json=body)
    if jatos.v310:
        assert r.json()["error"] == {"code": "UNSPECIFIED", "message": message}
    else:
        assert (r.status_code, r.text) == (400, message)


def test_non_numeric_query_ids_are_500_before_3_10_and_dropped_after(jatos: Jatos) -> None:
    sid = _study(jatos, 1)
    _run(jatos.server, sid, ["d"])
    r = jatos.get(f"results/metadata?studyId={sid}&studyId=abc")
    if jatos.v310:
        assert r.status_code == 200 and len(_crids(r.json())) == 1
    else:
        assert r.status_code == 500


# =============================================================== zips (docs/jatos-api.md §14.3)


def test_combined_zip_layout_streamed_chunked_metadata_last(jatos: Jatos) -> None:
    sid = _study(jatos)
    run = _run(jatos.server, sid, ["first", None], files={"a.webm": b"AUDIO"})
    empty = _run(jatos.server, sid, ["", None])
    r = jatos.get(f"results?studyId={sid}")
    assert r.status_code == 200
    assert r.headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in r.headers
    suffix = "jrzip" if jatos.name == "3.8.2" else "zip"
    assert r.headers["Content-Disposition"].endswith(f'.{suffix}"')
    zf = _zip(r)
    names = zf.namelist()
    assert names[-1] == "metadata.json"
    one, two = (f"study_result_{run.id}/comp-result_{cr.id}" for cr in run.component_results)
    three = f"study_result_{empty.id}/comp-result_{empty.component_results[0].id}"
    assert sorted(names[:-1]) == sorted(
        [f"{one}/data.txt", f"{two}/files/a.webm", f"{three}/data.txt"]
    )
    assert zf.read(f"{one}/data.txt") == b"first"
    assert zf.read(f"{three}/data.txt") == b""
    assert zf.read(f"{two}/files/a.webm") == b"AUDIO"
    assert json.loads(zf.read("metadata.json"))["data"][0]["studyId"] == sid
    assert all(not n.endswith("/") for n in names)


def test_data_and_files_zips_hold_only_their_part(jatos: Jatos) -> None:
    sid = _study(jatos, 1)
    run = _run(jatos.server, sid, ["d"], files={"f.txt": b"f"})
    base = f"study_result_{run.id}/comp-result_{run.component_results[0].id}"
    data = jatos.get(f"results/data?studyId={sid}")
    assert _zip(data).namelist() == [f"{base}/data.txt"]
    assert "jatos_results_data_" in data.headers["Content-Disposition"]
    files = jatos.get(f"results/files?studyId={sid}")
    assert _zip(files).namelist() == [f"{base}/files/f.txt"]


def test_an_empty_selection_is_an_empty_zip(jatos: Jatos) -> None:
    r = jatos.get("results?studyId=999")
    zf = _zip(r)
    assert zf.namelist() == ["metadata.json"]
    assert json.loads(zf.read("metadata.json"))["data"] == []


def test_a_truncated_zip_still_answers_200(jatos: Jatos) -> None:
    sid = _study(jatos, 1)
    for i in range(3):
        _run(jatos.server, sid, [f"d{i}"])
    jatos.server.faults.truncate_results_next(after_entries=2)
    r = jatos.get(f"results?studyId={sid}")
    assert r.status_code == 200
    with pytest.raises(zipfile.BadZipFile):
        _zip(r)
    jatos.server.faults.truncate_results_next(after_entries=1, valid=True)
    names = _zip(jatos.get(f"results?studyId={sid}")).namelist()
    assert len(names) == 1 and names[0].endswith("/data.txt")  # valid, partial, no metadata
    assert len(_zip(jatos.get(f"results?studyId={sid}")).namelist()) == 4


def test_silence_longer_than_the_keepalive_gets_a_space_byte(
    make_jatos: Callable[..., Jatos],
) -> None:
    jatos = make_jatos(personality="3.10", keepalive_s=0.1)
    sid = _study(jatos, 1)
    _run(jatos.server, sid, ["d"])
    clean = jatos.get(f"results/data?studyId={sid}").content
    jatos.server.faults.results_stall_s = 0.25
    stalled = jatos.get(f"results/data?studyId={sid}").content
    zip_bytes = stalled.lstrip(b" ")
    assert 2 <= len(stalled) - len(zip_bytes) <= 3  # a space per silent interval
    assert len(zip_bytes) == len(clean)
    assert (
        zipfile.ZipFile(io.BytesIO(clean)).namelist()
        == zipfile.ZipFile(io.BytesIO(zip_bytes)).namelist()
    )


# ========================================================= plain text (docs/jatos-api.md §14.4)


def test_plain_text_data_per_version(jatos: Jatos) -> None:
    sid = _study(jatos, 1)
    runs = [_run(jatos.server, sid, [text]) for text in ("one", None, "three", "")]
    r = jatos.get(f"results/data?studyId={sid}&asPlainText=true")
    assert r.status_code == 200 and r.headers["Transfer-Encoding"] == "chunked"
    lines = r.content.split(b"\n")
    assert sorted(lines) == sorted([b"one", b"three", b"", b""])
    if jatos.name != "3.8.2":
        assert r.content == b"one\nthree\n\n"  # ascending component result IDs
    if jatos.v310:
        assert r.headers["Content-Type"] == "text/plain; charset=UTF-8"
        assert "Content-Disposition" not in r.headers
        r = jatos.get(f"results/data?studyId={sid}&asPlainText=true&download=true")
        assert r.headers["Content-Disposition"].endswith('.txt"')
    else:
        assert r.headers["Content-Type"] == "application/octet-stream"
        assert r.headers["Content-Disposition"].startswith(
            'attachment; filename="jatos_results_data_'
        )
    assert len(runs) == 4


def test_plain_text_checks_access_before_streaming(jatos: Jatos) -> None:
    server = jatos.server
    server.add_user("bob")
    other = server.add_study("Bob's", members=["bob"])
    server.add_component(other)
    run = _run(server, other.id, ["secret"])
    r = jatos.get(f"results/data?studyResultId={run.id}&asPlainText=true")
    assert r.status_code == 403


# ============================================================================ single file, delete


def test_single_result_file_inline_or_not_found(jatos: Jatos) -> None:
    run = _run(jatos.server, _study(jatos, 1), ["d"], files={"rec.webm": b"REC"})
    crid = run.component_results[0].id
    r = jatos.get(f"results/files/rec.webm?componentResultId={crid}")
    assert (r.status_code, r.content) == (200, b"REC")
    assert r.headers["Content-Disposition"] == 'inline; filename="rec.webm"'
    r = jatos.get(f"results/files/nope.webm?componentResultId={crid}")
    if jatos.v310:
        assert r.json()["error"] == {"code": "NOT_FOUND", "message": "File doesn't exist"}
    else:
        assert (r.status_code, r.text) == (404, "File does not exist")
    r = jatos.get("results/files/rec.webm?componentResultId=99999")
    assert r.status_code == (404 if jatos.v310 else 500)
    assert jatos.get("results/files/rec.webm").status_code == 400


def test_delete_results_checks_all_first_then_deletes_with_files(jatos: Jatos) -> None:
    sid = _study(jatos)
    server = jatos.server
    run = _run(server, sid, ["a", "b"], files={"f.txt": b"f"})
    keep = _run(server, sid, ["c"])
    first, second = run.component_results
    server.set_locked(sid, True)
    r = jatos.request("PUT", f"results/delete?componentResultId={first.id}")
    assert r.status_code == 403 and len(run.component_results) == 2
    server.set_locked(sid, False)
    r = jatos.request("PUT", "results/delete", json={"componentResultIds": [first.id]})
    if jatos.v310:
        assert r.json() == {"apiVersion": "1.1.0", "data": [first.id]}
        r = jatos.request("POST", f"results/delete?componentResultId={second.id}")
        assert r.json()["data"] == [second.id]
    else:
        assert (r.status_code, r.content) == (200, b"")
        r = jatos.request("PUT", f"results/delete?componentResultId={second.id}")
        assert r.status_code == 200
    assert [sr.id for sr in server.study_results(sid)] == [keep.id]  # the emptied run is gone
    assert list(server.uploads_root.rglob("f.txt")) == []


# =============================================== IDs and order (docs/jatos-api.md §14.2, §14.7)


def test_result_ids_increase_with_gaps_and_answers_are_not_sorted(
    make_jatos: Callable[..., Jatos],
) -> None:
    jatos = make_jatos(personality="3.10")
    sid = _study(jatos, 1)
    runs = [_run(jatos.server, sid, [str(i)]) for i in range(12)]
    srids = [run.id for run in runs]
    crids: list[int] = [cr.id for run in runs for cr in run.component_results]
    for ids in (srids, crids):
        assert ids == sorted(set(ids))
        assert any(b - a > 1 for a, b in itertools.pairwise(ids))  # gaps
    answer = [
        sr["id"]
        for sr in jatos.get(f"results/metadata?studyId={sid}").json()["data"][0]["studyResults"]
    ]
    assert sorted(answer) == srids and answer != srids


def test_an_old_running_run_gets_a_higher_component_result_id(jatos: Jatos) -> None:
    sid = _study(jatos)
    server = jatos.server
    old = _run(server, sid, ["a"], end="none")
    newer = _run(server, sid, ["b"])
    late: ComponentResult = server.start_component(old)
    assert old.id < newer.id and late.id > newer.component_results[0].id
