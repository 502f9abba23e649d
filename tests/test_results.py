"""results.py, the pure core: the metadata parsed defensively, what a pass fetches, withdraws
and keeps (compared with `==`), zip batches, the record and results.csv."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from jatos_sync.errors import UnsupportedServerError
from jatos_sync.results import (
    CSV_COLUMNS,
    RECORD_NAME,
    ComponentResultMeta,
    DataSize,
    Metadata,
    Mirrored,
    Plan,
    Record,
    ResultFile,
    Row,
    StudyResultMeta,
    batches,
    csv_text,
    encode_record,
    iso_time,
    load_record,
    parse_metadata,
    parse_record,
    plan_pass,
    rows_for,
)

# ---------------------------------------------------------------------------- builders


def cr(
    crid: int,
    *,
    size: int = 10,
    state: str = "FINISHED",
    files: tuple[ResultFile, ...] = (),
    component: int = 7,
) -> ComponentResultMeta:
    return ComponentResultMeta(
        id=crid,
        component_id=component,
        state=state,
        start_ms=1_718_000_000_000,
        end_ms=1_718_000_060_000,
        data=DataSize(size),
        files=files,
    )


def sr(
    srid: int, *crs: ComponentResultMeta, state: str = "FINISHED", seen: int = 1
) -> StudyResultMeta:
    return StudyResultMeta(
        id=srid,
        state=state,
        start_ms=1_718_000_000_000,
        end_ms=None if state in ("STARTED", "DATA_RETRIEVED") else 1_718_000_300_000,
        last_seen_ms=seen,
        worker_id="17",
        worker_type="PersonalSingle",
        batch_id=14,
        batch_title="Default",
        components=crs,
    )


def meta(*results: StudyResultMeta) -> Metadata:
    return Metadata(study_id=42, study_uuid="abc-1", results=results)


TITLES = {7: "Intro"}


def mirrored(result: StudyResultMeta, *, with_files: bool = True) -> Mirrored:
    """The entry a verified fetch of `result` leaves, with data as the metadata says."""
    local = {c.id: (c.data_size, tuple(f.name for f in c.files)) for c in result.components}
    return Mirrored(
        result.fingerprint,
        result.final,
        with_files,
        rows_for(result, TITLES, local=local),
    )


def record_of(*results: StudyResultMeta) -> Record:
    return Record(
        study_id=42,
        study_uuid="abc-1",
        titles=dict(TITLES),
        results={r.id: mirrored(r) for r in results},
    )


# ============================================================================ the metadata


def encoded(document: Any) -> bytes:
    return json.dumps(document).encode()


def metadata_answer(**overrides: Any) -> dict[str, Any]:
    """A 3.10-shaped metadata answer (docs/jatos-api.md §14.2) with one finished study result."""
    result: dict[str, Any] = {
        "id": 101,
        "uuid": "9e0f",
        "studyCode": "Xk3nQ8aZp1L",
        "startDate": 1718000000000,
        "endDate": 1718000300000,
        "duration": "00:05:00",
        "lastSeenDate": 1718000290000,
        "studyState": "FINISHED",
        "workerId": 17,
        "workerType": "PersonalSingle",
        "batchId": 14,
        "batchUuid": "b",
        "batchTitle": "Default",
        "groupId": None,
        "componentResults": [
            {
                "id": 301,
                "componentId": 31,
                "componentUuid": "a1f0",
                "startDate": 1718000001000,
                "endDate": 1718000299000,
                "duration": "00:04:58",
                "componentState": "FINISHED",
                "path": "/study_result_101/comp-result_301",
                "data": {"size": 1234, "sizeHumanReadable": "1.2 kB"},
                "files": [{"filename": "audio.webm", "size": 52311, "sizeHumanReadable": "52 kB"}],
            }
        ],
    }
    result.update(overrides)
    return {
        "apiVersion": "1.1.0",
        "data": [
            {"studyId": 42, "studyUuid": "ABC-1", "studyTitle": "T", "studyResults": [result]}
        ],
    }


def test_metadata_is_parsed_into_values() -> None:
    parsed = parse_metadata(encoded(metadata_answer()), study="42")
    assert parsed.study_id == 42 and parsed.study_uuid == "abc-1"
    assert parsed.problems == ()
    assert parsed.results == (
        StudyResultMeta(
            id=101,
            state="FINISHED",
            start_ms=1718000000000,
            end_ms=1718000300000,
            last_seen_ms=1718000290000,
            worker_id=17,
            worker_type="PersonalSingle",
            batch_id=14,
            batch_title="Default",
            components=(
                ComponentResultMeta(
                    id=301,
                    component_id=31,
                    state="FINISHED",
                    start_ms=1718000001000,
                    end_ms=1718000299000,
                    data=DataSize(1234),
                    files=(ResultFile("audio.webm", 52311),),
                ),
            ),
        ),
    )
    assert parsed.results[0].final
    assert parse_metadata(encoded(metadata_answer()), study="abc-1").results == parsed.results


def test_metadata_of_other_studies_is_ignored() -> None:
    assert parse_metadata(encoded(metadata_answer()), study="43").results == ()
    assert parse_metadata(encoded(metadata_answer()), study="abc-2").results == ()


@pytest.mark.parametrize(
    "overrides",
    [
        {"id": True},
        {"id": "101"},
        {"id": -1},
        {"componentResults": [{"id": 0, "data": {"size": 1}}]},
        {"componentResults": [{"id": 5, "data": {"size": "12"}}]},
        {"componentResults": [{"id": 5}]},
        {"componentResults": [{"id": 5, "data": {"size": 1}}, {"id": 5, "data": {"size": 1}}]},
    ],
)
def test_a_study_result_without_valid_ids_or_sizes_is_left_out_and_reported(
    overrides: dict[str, Any],
) -> None:
    parsed = parse_metadata(encoded(metadata_answer(**overrides)), study="42")
    assert parsed.results == ()
    assert len(parsed.problems) == 1


@pytest.mark.parametrize(
    "name", ["../../.bashrc", "/etc/passwd", "a/b.txt", "", "x\\y", ".", 5, None, "a\x00b"]
)
def test_a_result_file_with_an_unsafe_name_is_never_taken(name: object) -> None:
    files = [{"filename": name, "size": 3}, {"filename": "ok.webm", "size": 3}]
    answer = metadata_answer()
    answer["data"][0]["studyResults"][0]["componentResults"][0]["files"] = files
    parsed = parse_metadata(encoded(answer), study="42")
    (component,) = parsed.results[0].components
    assert component.files == (ResultFile("ok.webm", 3),)
    assert len(parsed.problems) == 1
    assert "not written" in parsed.problems[0].reason


def test_types_that_differ_by_version_and_odd_values_are_tolerated() -> None:
    # 3.8.2 sends groupId as text; optional keys are left out; timestamps may be null.
    answer = metadata_answer(
        groupId="7", endDate=None, lastSeenDate="soon", workerId=None, batchTitle=["x"]
    )
    (result,) = parse_metadata(encoded(answer), study="42").results
    assert (result.end_ms, result.last_seen_ms, result.worker_id, result.batch_title) == (
        None,
        None,
        "",
        "",
    )


def test_results_come_sorted_by_id_and_a_duplicate_is_left_out() -> None:
    answer = metadata_answer()
    first = answer["data"][0]["studyResults"][0]
    second = json.loads(json.dumps(first))
    second["id"] = 50
    second["componentResults"][0]["id"] = 150
    twice = json.loads(json.dumps(first))
    answer["data"][0]["studyResults"] = [first, second, twice]
    parsed = parse_metadata(encoded(answer), study="42")
    assert [r.id for r in parsed.results] == [50, 101]
    assert len(parsed.problems) == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"null",
        b"[]",
        b'{"data": {}}',
        b'{"apiVersion": "1.1.0"}',
        b'"x"',
        b"<html>",
        b'{"data": [{"studyId": 42, "studyResults": [5]}]}',
    ],
)
def test_an_answer_that_is_not_jatos_metadata_is_refused(raw: bytes) -> None:
    with pytest.raises(UnsupportedServerError, match="not JATOS's JSON"):
        parse_metadata(raw, study="42")


def test_metadata_json_gets_the_servers_own_json_of_this_study_only() -> None:
    answer = metadata_answer()
    raw = encoded(answer)
    assert parse_metadata(raw, study="42").document == raw
    other = {"studyId": 43, "studyUuid": "x", "studyResults": []}
    answer["data"].append(other)
    kept = json.loads(parse_metadata(encoded(answer), study="42").document)
    assert kept == {**answer, "data": answer["data"][:1]}


# ============================================================================ the plan


FILE = ResultFile("audio.webm", 500)


def test_a_first_pass_fetches_what_has_content_and_lists_empty_runs_without_a_request() -> None:
    done = sr(1, cr(10), cr(11, files=(FILE,)))
    running = sr(2, cr(20), state="STARTED")
    empty = sr(3, cr(30, size=0, state="STARTED"), state="STARTED")
    plan = plan_pass(meta(done, running, empty), Record(), files=True)
    assert plan.fetch == (done, running)
    assert plan.new == ("study_result_3/comp-result_30",)
    assert plan.record == {3: Mirrored(empty.fingerprint, False, True, rows_for(empty, {}))}
    assert (plan.withdraw, plan.unchanged) == ((), 0)


def test_a_final_result_is_never_fetched_again_and_an_idle_running_one_is_not_either() -> None:
    done = sr(1, cr(10))
    idle = sr(2, cr(20, state="STARTED"), state="STARTED")
    record = record_of(done, idle)
    plan = plan_pass(meta(done, idle), record, files=True)
    assert plan == Plan(record=record.results, unchanged=2)


def test_a_running_result_that_changed_is_fetched_again() -> None:
    running = sr(2, cr(20, state="STARTED"), state="STARTED", seen=1)
    record = record_of(running)
    later = sr(2, cr(20, size=99, state="STARTED"), state="STARTED", seen=2)
    assert plan_pass(meta(later), record, files=True).fetch == (later,)
    finished = sr(2, cr(20, size=99), state="FINISHED", seen=2)
    plan = plan_pass(meta(finished), record, files=True)
    assert plan.fetch == (finished,)
    assert plan.record == record.results  # the old copy stays until the new one is verified


def test_an_aborted_run_is_withdrawn_with_every_component_result_ever_seen() -> None:
    running = sr(2, cr(20, state="FINISHED"), cr(21, state="STARTED"), state="STARTED")
    record = record_of(running)
    aborted = sr(
        2,
        cr(20, size=0, state="ABORTED"),
        cr(21, size=0, state="ABORTED"),
        cr(22, size=0, state="ABORTED"),
        state="ABORTED",
    )
    plan = plan_pass(meta(aborted), record, files=True)
    assert plan.fetch == ()
    assert plan.withdraw == ((2, (20, 21, 22)),)
    assert plan.withdrawn == tuple(f"study_result_2/comp-result_{c}" for c in (20, 21, 22))
    rows = plan.record[2].rows
    assert {r.status for r in rows} == {"withdrawn"}
    assert all(r.data_size == 0 and r.files == () for r in rows)
    assert plan.record[2].final
    # Withdrawn once: unchanged from then on.
    again = plan_pass(meta(aborted), replace(record, results=dict(plan.record)), files=True)
    assert again == Plan(record=plan.record, unchanged=3)


def test_a_finished_result_is_not_withdrawn_by_a_later_answer() -> None:
    done = sr(1, cr(10))
    record = record_of(done)
    odd = sr(1, cr(10, size=0, state="ABORTED"), state="ABORTED")
    plan = plan_pass(meta(odd), record, files=True)
    assert plan == Plan(record=record.results, unchanged=1)


def test_results_deleted_on_the_server_are_kept_and_marked() -> None:
    done = sr(1, cr(10), cr(11))
    other = sr(2, cr(20))
    record = record_of(done, other)
    partly = sr(1, cr(11))
    plan = plan_pass(meta(partly), record, files=True)
    assert plan.fetch == () and plan.withdraw == ()
    assert plan.deleted_on_server == (
        "study_result_1/comp-result_10",
        "study_result_2/comp-result_20",
    )
    statuses = {r.path: r.status for e in plan.record.values() for r in e.rows}
    assert statuses == {
        "study_result_1/comp-result_10": "deleted_on_server",
        "study_result_1/comp-result_11": "final",
        "study_result_2/comp-result_20": "deleted_on_server",
    }
    assert plan.unchanged == 1
    again = plan_pass(meta(partly), replace(record, results=dict(plan.record)), files=True)
    assert again.deleted_on_server == () and again.unchanged == 3


def test_files_wanted_later_are_fetched_for_results_mirrored_without_them() -> None:
    done = sr(1, cr(10, files=(FILE,)))
    without = Record(results={1: replace(mirrored(done), with_files=False)}, titles=TITLES)
    assert plan_pass(meta(done), without, files=True).fetch == (done,)
    assert plan_pass(meta(done), without, files=False).fetch == ()


def test_a_rebuilt_record_fetches_everything_again() -> None:
    done = sr(1, cr(10))
    rebuilt = Record(results={1: replace(mirrored(done), fingerprint="", final=False)})
    assert plan_pass(meta(done), rebuilt, files=True).fetch == (done,)


def test_batches_group_by_count_and_size_in_id_order() -> None:
    small = [sr(i, cr(i * 10, size=100)) for i in (3, 1, 2)]
    assert [tuple(r.id for r in b) for b in batches(small, files=True, max_results=2)] == [
        (1, 2),
        (3,),
    ]
    big = sr(9, cr(90, size=10, files=(ResultFile("v.mp4", 10_000),)))
    groups = batches([*small, big], files=True, max_bytes=5_000)
    assert [tuple(r.id for r in b) for b in groups] == [(1, 2, 3), (9,)]
    assert batches([*small, big], files=False, max_bytes=5_000) == [
        (*sorted(small, key=lambda r: r.id), big)
    ]


# ============================================================================ record and CSV


def test_the_record_reads_back_what_it_wrote() -> None:
    record = record_of(
        sr(1, cr(10, files=(FILE,))), sr(2, cr(20, state="STARTED"), state="STARTED")
    )
    assert parse_record(encode_record(record)) == record


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.update(version=99),
        lambda d: d["results"]["1"]["rows"][0].__setitem__(14, "lost"),
        lambda d: d["results"]["1"]["rows"][0].__setitem__(13, ["../x"]),
        lambda d: d["results"]["1"]["rows"][0].__setitem__(0, 2),
        lambda d: d["results"]["1"].update(final="yes"),
        lambda d: d.update(titles=[]),
        lambda d: d["results"]["1"]["rows"][0].__setitem__(1, 0),
        lambda d: d["results"]["1"]["rows"][0].__setitem__(12, -1),
        lambda d: d.update(extra=1),
        lambda d: d["results"]["1"]["rows"][0].append("one too many"),
    ],
)
def test_a_damaged_record_is_rebuilt_never_trusted(tmp_path: Path, damage: Any) -> None:
    document = json.loads(encode_record(record_of(sr(1, cr(10, files=(FILE,))))))
    damage(document)
    (tmp_path / RECORD_NAME).write_text(json.dumps(document))
    record, why = load_record(tmp_path)
    assert record == Record() and why is not None and "damaged" in why
    (tmp_path / RECORD_NAME).write_bytes(b"\xff{")
    assert load_record(tmp_path)[0] == Record()


def test_a_lost_record_keeps_the_rows_results_csv_still_has(tmp_path: Path) -> None:
    gone = sr(1, cr(10, files=(FILE,)), cr(11))
    rows = [replace(r, status="deleted_on_server") for r in mirrored(gone).rows]
    (tmp_path / "results.csv").write_text(csv_text(rows) + "x,y,z\n")
    kept = tmp_path / "study_result_1" / "comp-result_10"
    (kept / "files").mkdir(parents=True)
    (kept / "data.txt").write_text("0123456789")
    (kept / "files" / "audio.webm").write_bytes(b"a" * 500)
    record, why = load_record(tmp_path)
    assert why is not None and "missing" in why
    # The rows as results.csv has them, with what the folder really holds.
    assert record.results == {
        1: Mirrored("", False, False, (rows[0], replace(rows[1], data_size=0)))
    }
    assert load_record(tmp_path / "new")[1] is None  # a new folder is no rebuild


def test_a_row_with_a_number_python_reads_but_csv_should_not_loses_no_other_row(
    tmp_path: Path,
) -> None:
    rows = [replace(r, status="deleted_on_server") for r in mirrored(sr(1, cr(10))).rows]
    text = csv_text(rows)
    head, _, body = text.partition("\n")
    odd = body.replace("1,", "\u00b2,", 1)  # "²" is a digit to str.isdigit, not to int()
    (tmp_path / "results.csv").write_text(f"{head}\n{odd}{body}")
    record, _why = load_record(tmp_path)
    assert record.results == {1: Mirrored("", False, False, (replace(rows[0], data_size=0),))}


def test_results_csv_has_one_row_per_component_result_in_id_order() -> None:
    rows = [
        *mirrored(sr(2, cr(20, files=(FILE, ResultFile("b.txt", 1))))).rows,
        *mirrored(sr(1, cr(11, size=0, state="STARTED"), state="STARTED")).rows,
    ]
    parsed = list(csv.DictReader(io.StringIO(csv_text(rows))))
    assert tuple(parsed[0]) == CSV_COLUMNS
    assert parsed[0] == {
        "study_result_id": "1",
        "component_result_id": "11",
        "component_id": "7",
        "component_title": "Intro",
        "worker_id": "17",
        "worker_type": "PersonalSingle",
        "batch_id": "14",
        "batch_title": "Default",
        "study_state": "STARTED",
        "component_state": "STARTED",
        "start_time": "2024-06-10T06:13:20.000Z",
        "end_time": "2024-06-10T06:14:20.000Z",
        "data_size": "0",
        "files": "0",
        "path": "study_result_1/comp-result_11",
        "status": "running",
    }
    assert (parsed[1]["files"], parsed[1]["status"], parsed[1]["data_size"]) == ("2", "final", "10")


def test_times_are_iso_8601_in_utc() -> None:
    assert iso_time(0) == "1970-01-01T00:00:00.000Z"
    assert iso_time(None) == "" and iso_time(10**20) == ""


def test_rows_carry_the_local_facts() -> None:
    result = sr(5, cr(50, files=(FILE,)))
    (row,) = rows_for(result, TITLES, local={50: (12, ("audio.webm",))})
    assert row == Row(
        study_result_id=5,
        component_result_id=50,
        component_id=7,
        component_title="Intro",
        worker_id="17",
        worker_type="PersonalSingle",
        batch_id=14,
        batch_title="Default",
        study_state="FINISHED",
        component_state="FINISHED",
        start_ms=1_718_000_000_000,
        end_ms=1_718_000_060_000,
        data_size=12,
        files=("audio.webm",),
        status="final",
    )


def test_an_odd_entry_costs_only_that_entry_and_the_others_read_the_same() -> None:
    answer = metadata_answer()
    well_formed = parse_metadata(encoded(answer), study="42")
    odd = json.loads(json.dumps(answer["data"][0]["studyResults"][0]))
    odd.update(id=7, workerId=[1], componentResults=[{"id": 70, "data": {"size": "ten"}}])
    answer["data"][0]["studyResults"].append(odd)
    read_slowly = parse_metadata(encoded(answer), study="42")
    assert read_slowly.results == well_formed.results
    assert [p.path.name for p in read_slowly.problems] == ["study_result_7"]


def test_component_results_come_sorted_whatever_the_servers_order() -> None:
    answer = metadata_answer()
    first = answer["data"][0]["studyResults"][0]["componentResults"][0]
    first["files"] = []
    later = {**first, "id": 300}
    answer["data"][0]["studyResults"][0]["componentResults"].append(later)
    (result,) = parse_metadata(encoded(answer), study="42").results
    assert [c.id for c in result.components] == [300, 301]
