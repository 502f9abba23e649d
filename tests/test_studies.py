"""studies.py: the study operations per version against the stand-in (3.8.2, 3.9, 3.10) —
reading, creating with a chosen UUID (and checking that it exists), re-importing a
definition without touching the files, deleting components, counting results, exporting,
study codes — and how JATOS's refusals become the program's errors."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jatos_sync.answers import ApiAnswer
from jatos_sync.client import Download, JatosClient
from jatos_sync.credentials import check_token_format
from jatos_sync.definition import ComponentDef, Definition, plan_definition
from jatos_sync.errors import (
    AccessError,
    ServerUnavailableError,
    StudyLockedError,
    StudyRefusedError,
    UnsupportedServerError,
)
from jatos_sync.jzip import check_export
from jatos_sync.model import RelPath
from jatos_sync.studies import (
    apply_plan,
    count_results,
    create_study,
    delete_component,
    export_study,
    find_study,
    link_url,
    read_study,
    study_codes,
)
from jatos_sync.testing import StandInServer
from tests.test_definition import server_study

NEW_UUID = "3c8d5a2e-6f0b-4f5e-9a51-0d2f4c7b9e11"
DEFINITION = Definition(
    title="Stroop task",
    description="Words",
    input='{"lang":"en"}',
    components=(
        ComponentDef("Consent", "consent.html"),
        ComponentDef("Task", "index.html", input='{"block":1}'),
    ),
)


@pytest.fixture(params=["3.8.2", "3.9", "3.10"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StandInServer]:
    with StandInServer(personality=request.param, data_dir=tmp_path / "server") as server:
        server.populate("alice", study_title="Existing")
        yield server


@pytest.fixture
def client(server: StandInServer) -> Iterator[JatosClient]:
    assert server.token is not None
    with JatosClient(server.url, check_token_format(server.token, source="test")) as client:
        client.token_info()  # learns the version, as every command does first
        yield client


def folder_with_pages(tmp_path: Path) -> Path:
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "index.html").write_text("<p>task</p>")
    (folder / "consent.html").write_text("<p>consent</p>")
    return folder


def create(client: JatosClient, tmp_path: Path, definition: Definition = DEFINITION) -> Any:
    return create_study(
        client,
        definition,
        study_uuid=NEW_UUID,
        dir_name="stroop",
        folder=folder_with_pages(tmp_path),
        files=[RelPath("index.html"), RelPath("consent.html")],
    )


def test_a_study_is_created_with_the_chosen_uuid_files_and_definition(
    server: StandInServer, client: JatosClient, tmp_path: Path
) -> None:
    study = create(client, tmp_path)
    assert study.uuid == NEW_UUID and study.title == "Stroop task"
    record = server.find_study(NEW_UUID)
    assert record is not None and record.dir_name == "stroop"
    assert server.files(record) == {"index.html": b"<p>task</p>", "consent.html": b"<p>consent</p>"}
    assert [(c.title, c.html_file_path) for c in record.components] == [
        ("Consent", "consent.html"),
        ("Task", "index.html"),
    ]
    assert record.batches, "a new study gets a default batch"
    assert not plan_definition(DEFINITION, study, api_version=client.api_version or "").writes


def test_an_import_that_jatos_answers_without_creating_is_an_error(
    client: JatosClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 3.8.2 answers 200 and imports nothing in some cases (docs/jatos-api.md §15.2 item 3):
    # only the check after the import can tell.
    silent = ApiAnswer(
        status=200, json={"studyExists": False}, text="", content_type="", location=None
    )
    monkeypatch.setattr(client, "api_upload", lambda *a, **k: silent)
    with pytest.raises(ServerUnavailableError, match="has no study with this UUID afterwards"):
        create(client, tmp_path)


def test_read_study_gives_components_and_batches_on_every_version(
    server: StandInServer, client: JatosClient
) -> None:
    assert server.study is not None
    server.add_component(
        server.study, "Intro", html_file_path="intro.html", component_input='{"a":1}'
    )
    study = read_study(client, server.study.uuid)
    assert study.id == server.study.id and study.title == "Existing"
    assert [(c.title, c.html, c.input) for c in study.components] == [
        ("Intro", "intro.html", '{"a":1}')
    ]
    assert study.batches[0].worker_types == server.personality.default_worker_types
    assert find_study(client, NEW_UUID) is None


def test_a_reimport_changes_properties_and_components_but_never_the_files(
    server: StandInServer, client: JatosClient, tmp_path: Path
) -> None:
    study = create(client, tmp_path)
    record = server.find_study(NEW_UUID)
    assert record is not None
    before = server.files(record)
    wanted = dataclasses.replace(
        DEFINITION, title="Renamed", components=tuple(reversed(DEFINITION.components))
    )
    plan = plan_definition(wanted, study, api_version=client.api_version or "")
    assert plan.reimport
    apply_plan(client, study, wanted, plan)
    assert server.files(record) == before
    assert record.title == "Renamed"
    assert [c.title for c in record.components] == ["Task", "Consent"]


def test_a_locked_study_refuses_a_definition_change(
    server: StandInServer, client: JatosClient, tmp_path: Path
) -> None:
    study = create(client, tmp_path)
    server.set_locked(server.find_study(NEW_UUID), True)  # type: ignore[arg-type]
    wanted = dataclasses.replace(DEFINITION, title="Renamed")
    with pytest.raises(StudyLockedError):
        apply_plan(
            client,
            study,
            wanted,
            plan_definition(wanted, study, api_version=client.api_version or ""),
        )


def test_what_jatos_refuses_in_a_definition_becomes_a_refusal_with_its_reason(
    server: StandInServer, client: JatosClient, tmp_path: Path
) -> None:
    study = create(client, tmp_path)
    # Past the local checks (config_reader refuses this title): JATOS's own validation.
    wanted = dataclasses.replace(DEFINITION, title="<b>bold</b>")
    plan = plan_definition(wanted, study, api_version=client.api_version or "")
    with pytest.raises(StudyRefusedError, match="JATOS refused it") as refused:
        apply_plan(client, study, wanted, plan)
    assert refused.value.exit_code == 2


def test_creating_over_a_study_of_others_is_refused(
    server: StandInServer, client: JatosClient, tmp_path: Path
) -> None:
    server.add_user("bob")
    theirs = server.add_study("Bob's", members=["bob"])
    with pytest.raises(AccessError):
        create_study(
            client,
            DEFINITION,
            study_uuid=theirs.uuid,
            dir_name="bobs",
            folder=folder_with_pages(tmp_path),
            files=[RelPath("index.html"), RelPath("consent.html")],
        )
    assert theirs.title == "Bob's"


def test_results_are_counted_per_component(
    server: StandInServer, client: JatosClient, tmp_path: Path
) -> None:
    study = create(client, tmp_path)
    record = server.find_study(NEW_UUID)
    assert record is not None
    consent, task = record.components
    for _ in range(2):
        run = server.start_run(record)
        server.start_component(run, consent)
        server.start_component(run, task)
    run = server.start_run(record)
    server.start_component(run, consent)
    assert count_results(client, study) == {consent.id: 3, task.id: 2}


@pytest.mark.parametrize("runs", ["7", '[{"id": 1, "componentResults": 3}]', '["x"]'])
def test_results_metadata_of_an_odd_shape_is_never_a_crash(runs: str) -> None:
    """The metadata is untrusted: an odd shape is refused in words."""

    class Answering:
        def api_download(self, path: str, dest: Any, **_: Any) -> Download:
            dest.write(
                f'{{"apiVersion": "1.1.0", "data": [{{"studyId": 5, '
                f'"studyResults": {runs}}}]}}'.encode()
            )
            return Download(size=0, content_type="application/json", disposition="")

    study = server_study(id=5)
    with pytest.raises(UnsupportedServerError, match=r"not JATOS's JSON.*nothing was deleted"):
        count_results(Answering(), study)  # type: ignore[arg-type]


def test_deleting_a_component_takes_its_results_and_is_refused_by_3_8_2(
    server: StandInServer, client: JatosClient, tmp_path: Path
) -> None:
    study = create(client, tmp_path)
    record = server.find_study(NEW_UUID)
    assert record is not None
    run = server.start_run(record)
    server.start_component(run, record.components[0])
    if server.personality.name == "3.8.2":
        with pytest.raises(StudyRefusedError, match=r"3\.8\.2 cannot delete"):
            delete_component(client, study, study.components[0])
        return
    delete_component(client, study, study.components[0])
    assert [c.title for c in record.components] == ["Task"]
    assert count_results(client, study) == {}


def test_an_export_is_the_study_archive(
    server: StandInServer, client: JatosClient, tmp_path: Path
) -> None:
    study = create(client, tmp_path)
    target = tmp_path / "export.jzip"
    with target.open("wb") as stream:
        export_study(client, study.id, stream)
    archive = check_export(target, study_uuid=NEW_UUID)
    assert set(map(str, archive.files)) == {"index.html", "consent.html"}


def test_study_codes_are_made_for_the_named_batch_in_every_version(
    server: StandInServer, client: JatosClient
) -> None:
    assert server.study is not None
    study = read_study(client, server.study.id)
    codes = study_codes(
        client,
        study,
        worker_type="personal-single",
        batch=study.batches[0],
        amount=3,
        comment="wave 1 + 2%",
    )
    assert len(set(codes)) == 3
    for code in codes:
        result = server.open_link(code)
        assert result.worker_type == "PersonalSingle"
    with server._state.lock:
        comments = {w.comment for w in server._state.workers.values()}
    assert comments == {"wave 1 + 2%"}  # survives 3.9's second URL-decoding


def test_a_link_keeps_the_path_prefix() -> None:
    assert link_url("https://x.org/pfx/", "abc") == "https://x.org/pfx/publix/abc"


def test_a_code_answer_that_is_not_codes_is_refused(
    server: StandInServer, client: JatosClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert server.study is not None
    study = read_study(client, server.study.id)
    odd = ApiAnswer(status=200, json={"data": ["../../x"]}, text="", content_type="", location=None)
    monkeypatch.setattr(client, "api_json", lambda *a, **k: odd)
    with pytest.raises(Exception, match="instead of JATOS's JSON"):
        study_codes(
            client,
            study,
            worker_type="personal-multiple",
            batch=study.batches[0],
            amount=1,
            comment=None,
        )
