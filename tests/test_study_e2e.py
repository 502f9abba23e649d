"""The study as code, end to end: the real CLI in process against the stand-in in its 3.8.2,
3.9 and 3.10 personalities. Asserted on the server's records and files, the write requests
it saw, the exit code and the message."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from jatos_sync.cli import main
from jatos_sync.config import load_config
from jatos_sync.credentials import load_token
from jatos_sync.daemon.supervisor import Daemon
from jatos_sync.state import StateStore
from jatos_sync.sync import MappingSync
from jatos_sync.testing import StandInServer
from jatos_sync.testing.state import Study
from tests.conftest import Run, assert_no_token
from tests.daemon_lab import FAST, FAST_WATCH, client_factory, running, wait_for

API = "/jatos/api/v1"
STUDY_UUID = "3c8d5a2e-6f0b-4f5e-9a51-0d2f4c7b9e11"
PERSONALITIES = ["3.8.2", "3.9", "3.10"]
PAGES = {
    "index.html": "<!DOCTYPE html><title>Stroop</title><script src='js/task.js'></script>",
    "consent.html": "<!DOCTYPE html><title>Consent</title><p>Do you agree?</p>",
    "debrief.html": "<!DOCTYPE html><title>Thanks</title><p>Thank you.</p>",
    "js/task.js": "console.log('task');",
}


def definition(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "title": "Stroop task",
        "description": "Colour-word interference, 120 trials",
        "comments": "pilot version",
        "input": {"lang": "en", "trials": 120},
        "end_redirect_url": "https://example.org/done",
        "linear": False,
        "allow_preview": True,
        "components": [
            {"title": "Consent", "html": "consent.html"},
            {
                "title": "Experiment",
                "html": "index.html",
                "input": {"block": 1},
                "reloadable": False,
                "active": True,
            },
        ],
    }
    return {**base, **changes}


@dataclass
class StudyLab:
    """A stand-in with a user and a token but no study, a folder of pages and a config."""

    server: StandInServer
    token: str
    tmp: Path
    folder: Path
    config_path: Path
    state_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def v310(self) -> bool:
        return self.server.personality.name == "3.10"

    @property
    def v382(self) -> bool:
        return self.server.personality.name == "3.8.2"

    def write(
        self,
        study_definition: dict[str, Any] | None,
        *,
        create: bool = True,
        study: str = STUDY_UUID,
        **extra: Any,
    ) -> None:
        mapping: dict[str, Any] = {
            "name": "exp",
            "folder": str(self.folder),
            "study": study,
            "create": create,
            **extra,
        }
        if study_definition is not None:
            mapping["definition"] = study_definition
        document = {
            "server": {"url": self.server.url, "retries": 1, "timeout": 5},
            "state_dir": str(self.state_dir),
            "mappings": [mapping],
        }
        self.config_path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")

    def run(self, *args: str, config: Path | None = None) -> Run:
        out, err = io.StringIO(), io.StringIO()
        code = main(
            ["-c", str(config or self.config_path), *args],
            environ=self.env,
            stdout=out,
            stderr=err,
            stdin=io.StringIO(),
        )
        assert_no_token({self.token}, out.getvalue() + err.getvalue(), "CLI output")
        return Run(code, out.getvalue(), err.getvalue())

    def study(self) -> Study:
        found = self.server.find_study(STUDY_UUID)
        assert found is not None, "the study was not created"
        return found

    def components(self) -> list[tuple[str, str | None, bool]]:
        return [(c.title, c.html_file_path, c.active) for c in self.study().components]

    def writes(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.server.requests if r.method not in ("GET", "HEAD")]

    def reimport(self) -> tuple[str, str]:
        route = "studies" if self.v310 else "study"
        return ("POST", f"{API}/{route}?keepProperties=false&keepAssets=true")

    def created(self, study_definition: dict[str, Any] | None = None) -> Study:
        """Write the config, create the study with a sync, and forget the requests."""
        self.write(study_definition or definition())
        result = self.run("sync")
        assert result.code == 0, result.out + result.err
        self.server.clear_requests()
        return self.study()


def make_lab(tmp_path: Path, personality: str, *, prefix: str = "") -> Iterator[StudyLab]:
    server = StandInServer(personality=personality, prefix=prefix, data_dir=tmp_path / "server")
    server.start()
    try:
        server.add_user("alice")
        token = server.add_token("alice")
        folder = tmp_path / "experiment"
        for name, text in PAGES.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        yield StudyLab(
            server=server,
            token=token,
            tmp=tmp_path,
            folder=folder,
            config_path=tmp_path / "jatos-sync.yaml",
            state_dir=tmp_path / "state",
            env={"JATOS_TOKEN": token, "JATOS_SYNC_STATE_DIR": str(tmp_path / "state")},
        )
    finally:
        server.stop()


@pytest.fixture(params=PERSONALITIES)
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StudyLab]:
    yield from make_lab(tmp_path, request.param)


def init(lab: StudyLab, *args: str, config: Path | None = None) -> Run:
    """`jatos-sync init …` without a terminal, as a script or CI runs it."""
    return lab.run("init", *args, config=config)


# ------------------------------------------------------------------------------ creating


def test_init_create_on_an_empty_server_makes_the_study_of_the_folder(lab: StudyLab) -> None:
    result = init(lab, "--create", "--url", lab.server.url, "--folder", str(lab.folder))
    assert result.code == 0, result.out + result.err
    config = yaml.safe_load(lab.config_path.read_text())
    mapping = config["mappings"][0]
    assert mapping["create"] is True
    study = lab.server.find_study(mapping["study"])
    assert study is not None and study.title == "experiment"
    written = mapping["definition"]["components"]
    # One component per top-level page, index.html first, titled after its <title>.
    assert [(c["title"], c["html"]) for c in written] == [
        ("Stroop", "index.html"),
        ("Consent", "consent.html"),
        ("Thanks", "debrief.html"),
    ]
    assert [(c.title, c.html_file_path, c.active, c.uuid) for c in study.components] == [
        (c["title"], c["html"], True, c["uuid"]) for c in written
    ]
    assert lab.server.files(study) == {k: v.encode() for k, v in PAGES.items()}
    assert "ok: ready to sync" in result.out
    lab.server.clear_requests()
    again = lab.run("sync")
    assert again.code == 0, again.out + again.err
    assert lab.writes() == []  # the second sync sends no write request of any kind


def test_a_created_study_has_every_declared_property_and_component(lab: StudyLab) -> None:
    study = lab.created()
    assert (study.title, study.description, study.comments) == (
        "Stroop task",
        "Colour-word interference, 120 trials",
        "pilot version",
    )
    assert json.loads(study.input or "") == {"lang": "en", "trials": 120}
    assert (study.end_redirect_url, study.allow_preview, study.linear) == (
        "https://example.org/done",
        True,
        False,
    )
    assert lab.components() == [
        ("Consent", "consent.html", True),
        ("Experiment", "index.html", True),
    ]
    assert json.loads(study.components[1].input or "") == {"block": 1}
    assert lab.server.files(study) == {k: v.encode() for k, v in PAGES.items()}
    result = lab.run("sync", "--json")
    assert result.code == 0 and result.json["mappings"][0]["definition"] == []
    assert lab.writes() == []


def test_a_sync_after_creation_deletes_a_file_deleted_locally(lab: StudyLab) -> None:
    study = lab.created()
    (lab.folder / "js" / "task.js").unlink()
    result = lab.run("sync")
    assert result.code == 0, result.out
    assert "js/task.js" not in lab.server.files(study)


def test_an_archive_a_proxy_refuses_as_too_large_creates_the_study_then_uploads_file_by_file(
    lab: StudyLab,
) -> None:
    for n in range(3):  # incompressible: together above the proxy's limit, each below it
        (lab.folder / "img" / f"{n}.bin").parent.mkdir(exist_ok=True)
        (lab.folder / "img" / f"{n}.bin").write_bytes(os.urandom(1500))
    lab.server.faults.proxy_max_body_bytes = 4000
    lab.write(definition())
    result = lab.run("sync")
    assert result.code == 0, result.out + result.err
    assert "study_archive_too_large" in result.err
    study = lab.study()
    assert lab.server.files(study) == {
        p.relative_to(lab.folder).as_posix(): p.read_bytes()
        for p in lab.folder.rglob("*")
        if p.is_file()
    }
    assert lab.components() == [
        ("Consent", "consent.html", True),
        ("Experiment", "index.html", True),
    ]


def test_status_of_a_study_to_create_lists_it_and_changes_nothing(lab: StudyLab) -> None:
    lab.write(definition())
    result = lab.run("status", "--json")
    assert result.code == 0, result.err
    mapping = result.json["mappings"][0]
    assert mapping["definition"] == [
        {"study": "Stroop task", "change": "created"},
        {"component": "Consent", "change": "created"},
        {"component": "Experiment", "change": "created"},
    ]
    assert sorted(mapping["uploaded"]) == sorted(PAGES)
    assert lab.server.find_study(STUDY_UUID) is None and lab.writes() == []


def test_without_create_a_missing_study_is_an_error_that_names_the_key(lab: StudyLab) -> None:
    lab.write(definition(), create=False)
    result = lab.run("sync")
    assert result.code == 2
    assert "create: true" in result.out + result.err
    assert lab.writes() == []


def test_a_file_that_holds_the_token_never_reaches_the_server_inside_the_archive(
    lab: StudyLab,
) -> None:
    (lab.folder / "notes.txt").write_text(f"my token: {lab.token}\n")
    lab.write(definition())
    result = lab.run("sync")
    assert result.code == 1
    assert "notes.txt holds the API token" in result.out
    assert lab.server.find_study(STUDY_UUID) is None and lab.writes() == []


def test_a_definition_that_holds_the_token_is_never_sent(lab: StudyLab) -> None:
    lab.write(definition(input={"key": lab.token}))
    created = lab.run("sync")
    assert created.code == 1 and "holds the API token" in created.out
    assert lab.server.find_study(STUDY_UUID) is None and lab.writes() == []
    lab.created()
    lab.write(definition(comments=f"token {lab.token}"))
    changed = lab.run("sync")
    assert changed.code == 1 and "nothing was changed" in changed.out
    assert lab.writes() == [] and lab.study().comments == "pilot version"


# ------------------------------------------------------------------------------ changing

EDITS: dict[str, dict[str, Any]] = {
    "title": definition(title="Stroop task, version 2"),
    "input": definition(input={"lang": "de", "trials": 120}),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_a_changed_property_is_one_write_request(lab: StudyLab, edit: str) -> None:
    study = lab.created()
    study.active = False  # deactivated in the GUI: a change of the definition keeps it so
    lab.write(EDITS[edit])
    result = lab.run("sync", "--json")
    assert result.code == 0, result.out + result.err
    expected = [("PATCH", f"{API}/studies/{study.id}/properties")] if lab.v310 else [lab.reimport()]
    assert lab.writes() == expected
    study = lab.study()
    if edit == "title":
        assert study.title == "Stroop task, version 2"
        assert result.json["mappings"][0]["definition"] == [
            {"field": "title", "from": "Stroop task", "to": "Stroop task, version 2"}
        ]
    else:
        assert json.loads(study.input or "") == {"lang": "de", "trials": 120}
    # Everything else stays as declared, and the study stays inactive (docs/jatos-api.md §10.4).
    assert study.description == "Colour-word interference, 120 trials" and not study.active
    assert lab.components() == [
        ("Consent", "consent.html", True),
        ("Experiment", "index.html", True),
    ]
    lab.server.clear_requests()
    assert lab.run("sync").code == 0 and lab.writes() == []


def test_a_new_component_at_the_end_is_one_write_request(lab: StudyLab) -> None:
    study = lab.created()
    components = [*definition()["components"], {"title": "Debrief", "html": "debrief.html"}]
    lab.write(definition(components=components))
    result = lab.run("sync")
    assert result.code == 0, result.out + result.err
    expected = [("POST", f"{API}/studies/{study.id}/components")] if lab.v310 else [lab.reimport()]
    assert lab.writes() == expected
    assert lab.components() == [
        ("Consent", "consent.html", True),
        ("Experiment", "index.html", True),
        ("Debrief", "debrief.html", True),
    ]
    assert "component 'Debrief' created" in result.out
    lab.server.clear_requests()
    assert lab.run("sync").code == 0 and lab.writes() == []


def test_a_reordered_component_list_is_one_reimport_on_every_version(lab: StudyLab) -> None:
    lab.created()
    ids = {c.title: c.id for c in lab.study().components}
    consent, experiment = definition()["components"]
    lab.write(definition(components=[experiment, consent]))
    result = lab.run("sync", "--json")
    assert result.code == 0, result.out + result.err
    assert lab.writes() == [lab.reimport()]
    assert lab.components() == [
        ("Experiment", "index.html", True),
        ("Consent", "consent.html", True),
    ]
    assert {c.title: c.id for c in lab.study().components} == ids  # the same components
    assert {"component": "Experiment", "change": "moved", "from": 2, "to": 1} in result.json[
        "mappings"
    ][0]["definition"]
    lab.server.clear_requests()
    assert lab.run("sync").code == 0 and lab.writes() == []


def test_a_removed_component_is_deactivated_never_deleted(lab: StudyLab) -> None:
    lab.created()
    consent = lab.study().components[0]
    lab.write(definition(components=definition()["components"][1:]))
    result = lab.run("sync")
    assert result.code == 0, result.out + result.err
    expected = [("PATCH", f"{API}/components/{consent.id}")] if lab.v310 else [lab.reimport()]
    assert lab.writes() == expected
    assert ("Consent", "consent.html", False) in lab.components()
    assert ("Experiment", "index.html", True) in lab.components()
    assert "component 'Consent' deactivated" in result.out
    lab.server.clear_requests()
    assert lab.run("sync").code == 0 and lab.writes() == []


def test_a_component_renamed_in_place_stays_the_same_component(lab: StudyLab) -> None:
    lab.created()
    before = [(c.id, c.uuid) for c in lab.study().components]
    components = definition()["components"]
    components[0] = {"title": "Informed consent", "html": "consent.html"}
    lab.write(definition(components=components))
    assert lab.run("sync").code == 0
    assert [(c.id, c.uuid) for c in lab.study().components] == before
    assert lab.components()[0] == ("Informed consent", "consent.html", True)


def test_a_component_with_a_uuid_keeps_it_when_its_page_changes(lab: StudyLab) -> None:
    component_uuid = "a1f0c3e2-1b2c-4d5e-8f90-123456789abc"
    components = definition()["components"]
    components[0] = {"title": "Consent", "html": "consent.html", "uuid": component_uuid}
    lab.created(definition(components=components))
    components[0] = {"title": "Debrief", "html": "debrief.html", "uuid": component_uuid}
    lab.write(definition(components=components))
    assert lab.run("sync").code == 0
    first = lab.study().components[0]
    assert (first.uuid, first.title, first.html_file_path) == (
        component_uuid,
        "Debrief",
        "debrief.html",
    )
    assert len(lab.study().components) == 2


def test_a_component_whose_html_file_is_missing_is_a_config_error(lab: StudyLab) -> None:
    components = [*definition()["components"], {"title": "Gone", "html": "gone.html"}]
    lab.write(definition(components=components))
    result = lab.run("sync")
    assert result.code == 2
    assert f"{lab.config_path}:" in result.err
    assert "mappings[0].definition.components[2].html" in result.err
    assert "'gone.html' is not a file in the folder" in result.err
    assert lab.server.find_study(STUDY_UUID) is None and lab.writes() == []


def test_a_dry_run_lists_the_definition_changes_and_writes_nothing(lab: StudyLab) -> None:
    lab.created()
    components = [*definition()["components"], {"title": "Debrief", "html": "debrief.html"}]
    lab.write(definition(title="New title", components=components))
    result = lab.run("sync", "--dry-run", "--json")
    assert result.code == 0, result.err
    assert result.json["mappings"][0]["definition"] == [
        {"field": "title", "from": "Stroop task", "to": "New title"},
        {"component": "Debrief", "change": "created"},
    ]
    assert lab.writes() == [] and lab.study().title == "Stroop task"
    human = lab.run("status")
    assert "would change title: 'Stroop task' → 'New title'" in human.out
    assert "component 'Debrief' would be created" in human.out


def test_a_locked_study_is_not_changed_and_the_exit_code_is_3(lab: StudyLab) -> None:
    study = lab.created()
    lab.server.set_locked(study, True)
    (lab.folder / "js" / "new.js").write_text("new")
    lab.write(definition(title="Changed while locked"))
    result = lab.run("sync")
    assert result.code == 3
    assert "locked" in result.out and "nothing was changed" in result.out
    assert lab.writes() == []  # not even the file, also on 3.8.2 (which does not refuse)
    assert lab.study().title == "Stroop task"
    assert "js/new.js" not in lab.server.files(study)


def test_a_locked_study_in_step_with_its_definition_syncs_as_before(lab: StudyLab) -> None:
    study = lab.created()
    lab.server.set_locked(study, True)
    result = lab.run("sync")
    assert result.code == 0, result.out + result.err


# ------------------------------------------------------------------------------ deleting


def start_result(lab: StudyLab, component_title: str) -> None:
    """A participant's run with a result in the named component."""
    study = lab.study()
    component = next(c for c in study.components if c.title == component_title)
    run = lab.server.start_run(study)
    lab.server.start_component(run, component)
    lab.server.put_data(run, "some data")


@pytest.mark.parametrize("personality", ["3.9", "3.10"])
def test_deleting_a_component_needs_delete_components_and_yes_and_says_what_it_destroys(
    tmp_path: Path, personality: str
) -> None:
    for lab in make_lab(tmp_path, personality):
        lab.created()
        start_result(lab, "Consent")
        consent = lab.study().components[0]
        lab.write(definition(components=definition()["components"][1:]), delete_components=True)
        withheld = lab.run("sync")
        assert withheld.code == 4, withheld.out + withheld.err
        assert "deleting it would destroy 1 result" in withheld.out
        assert ("Consent", "consent.html", False) in lab.components()  # deactivated meanwhile
        lab.server.clear_requests()
        deleted = lab.run("sync", "--yes", "--json")
        assert deleted.code == 0, deleted.out + deleted.err
        changes = deleted.json["mappings"][0]["definition"]
        assert changes == [{"component": "Consent", "change": "deleted", "results": 1}]
        path = (
            f"{API}/components/{consent.id}"
            if lab.v310
            else f"{API}/studies/{lab.study().id}/components/{consent.id}"
        )
        assert lab.writes() == [("DELETE", path)]
        assert lab.components() == [("Experiment", "index.html", True)]
        assert all(not r.component_results for r in lab.server.study_results(lab.study()))


def test_the_daemons_passes_do_not_count_the_results_of_a_withheld_deletion(
    lab: StudyLab,
) -> None:
    """Counting reads the study's whole results metadata: worth it for a person reading the
    result of `sync`, not on each of the daemon's full passes."""
    lab.created()
    start_result(lab, "Consent")
    lab.write(definition(components=definition()["components"][1:]), delete_components=True)
    config = load_config(lab.config_path)
    client = client_factory(config, load_token(config.server, environ=lab.env))
    syncer = MappingSync(config.mappings[0], client=client, store=StateStore(lab.state_dir))
    lab.server.clear_requests()
    result = syncer.full_pass()  # as the daemon runs it
    changes = [(c.change, c.results) for c in result.definition]
    assert ("deletion withheld", None) in changes or lab.v382, changes  # 3.8.2 cannot delete
    assert not [r for r in lab.server.requests if "/results/metadata" in r.path]


def test_a_removed_component_is_not_deleted_without_delete_components_even_with_yes(
    lab: StudyLab,
) -> None:
    lab.created()
    lab.write(definition(components=definition()["components"][1:]))
    assert lab.run("sync", "--yes").code == 0
    assert ("Consent", "consent.html", False) in lab.components()


def test_jatos_3_8_2_cannot_delete_components_and_deactivates_them(tmp_path: Path) -> None:
    for lab in make_lab(tmp_path, "3.8.2"):
        lab.created()
        lab.write(definition(components=definition()["components"][1:]), delete_components=True)
        result = lab.run("sync", "--yes")
        assert result.code == 0, result.out + result.err
        assert ("Consent", "consent.html", False) in lab.components()
        assert "cannot delete components" in result.err


# ------------------------------------------------------------------------------ archives


def test_export_then_init_from_into_a_new_folder_then_sync_creates_no_second_study(
    lab: StudyLab,
) -> None:
    lab.created()
    archive = lab.tmp / "snapshot.jzip"
    exported = lab.run("export", "-o", str(archive))
    assert exported.code == 0, exported.out + exported.err
    with zipfile.ZipFile(archive) as zf:
        assert [n for n in zf.namelist() if n.endswith(".jas")] == [
            n for n in zf.namelist() if "/" not in n
        ]
    copy, copy_config = lab.tmp / "copy", lab.tmp / "copy.yaml"
    adopted = init(
        lab,
        "--from",
        str(archive),
        "--url",
        lab.server.url,
        "--folder",
        str(copy),
        config=copy_config,
    )
    assert adopted.code == 0, adopted.out + adopted.err
    written = yaml.safe_load(copy_config.read_text())["mappings"][0]
    assert written["study"] == STUDY_UUID and written["create"] is True
    assert written["definition"]["title"] == "Stroop task"
    assert (copy / "index.html").read_text() == PAGES["index.html"]
    lab.server.clear_requests()
    synced = lab.run("sync", config=copy_config)
    assert synced.code == 0, synced.out + synced.err
    assert lab.writes() == []
    assert [s.uuid for s in lab.server.study_results()] == []
    assert len([s for s in _studies(lab.server)]) == 1


def _studies(server: StandInServer) -> list[Study]:
    with server._state.lock:
        return list(server._state.studies.values())


def test_export_writes_a_checked_archive_with_a_default_name(
    lab: StudyLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab.created()
    monkeypatch.chdir(lab.tmp)
    result = lab.run("export")
    assert result.code == 0, result.out + result.err
    made = list(lab.tmp.glob("exp-*.jzip"))
    assert len(made) == 1 and made[0].name.endswith("Z.jzip")
    with zipfile.ZipFile(made[0]) as zf:
        assert zf.testzip() is None
    assert list(lab.tmp.glob(".*.part")) == []


# ------------------------------------------------------------------------------ links


@pytest.mark.parametrize("kind", ["personal-single", "personal-multiple"])
def test_links_are_working_participant_links(lab: StudyLab, kind: str) -> None:
    lab.created()
    result = lab.run("links", "--type", kind, "--amount", "3", "--comment", "wave 1")
    assert result.code == 0, result.out + result.err
    links = result.out.split()
    assert len(links) == 3 and len(set(links)) == 3
    for link in links:
        assert link.startswith(lab.server.url + "/publix/")
        assert requests.get(link, timeout=10).status_code == 200  # a run starts


def test_a_links_comment_follows_jatoss_rule_for_text(lab: StudyLab) -> None:
    lab.created()
    refused = lab.run("links", "--comment", "<b>wave 2</b>")
    assert refused.code == 2 and "--comment" in refused.err
    kept = lab.run("links", "--type", "personal-single", "--comment", "waves 1 < 2")
    assert kept.code == 0, kept.out + kept.err


def test_general_links_need_a_batch_that_allows_them_and_are_never_allowed_silently(
    lab: StudyLab,
) -> None:
    study = lab.created()
    refused = lab.run("links", "--type", "general-single")
    assert refused.code == 2
    assert "does not allow general-single links" in refused.err
    assert "Allowed types" in refused.err
    assert lab.writes() == []
    batch = study.batches[0]
    assert "GeneralSingle" not in batch.allowed_worker_types  # untouched
    lab.server.set_allowed_worker_types(study, ["ps", "pm", "gs", "gm"])
    for kind in ("general-single", "general-multiple"):
        result = lab.run("links", "--type", kind, "--amount", "5")
        assert result.code == 0, result.out + result.err
        (link,) = result.out.split()  # one link for everyone
        assert requests.get(link, timeout=10).status_code == 200


@pytest.mark.parametrize("personality", ["3.9", "3.10"])
def test_links_keep_the_servers_path_prefix_and_check_the_batch(
    tmp_path: Path, personality: str
) -> None:
    for lab in make_lab(tmp_path, personality, prefix="/jatos-pfx"):
        study = lab.created()
        result = lab.run("links", "--json")
        assert result.code == 0, result.out + result.err
        (link,) = result.json["links"]
        assert link.startswith(lab.server.url + "/publix/") and "/jatos-pfx/publix/" in link
        assert requests.get(link, timeout=10).status_code == 200
        other = lab.server.add_study("Another", members=["alice"])
        foreign = lab.run("links", "--batch", str(other.batches[0].id))
        assert foreign.code == 2 and "has no batch" in foreign.err
        assert study.batches[0].id != other.batches[0].id


# ------------------------------------------------------------------------------ watch


@pytest.fixture(params=["3.9", "3.10"])
def watched(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StudyLab]:
    yield from make_lab(tmp_path, request.param)


def test_watch_creates_the_study_and_applies_an_edited_definition_on_reload(
    watched: StudyLab,
) -> None:
    lab = watched
    lab.write(definition())
    text = lab.config_path.read_text()
    lab.config_path.write_text(text + FAST_WATCH, encoding="utf-8")
    config = load_config(lab.config_path)
    daemon = Daemon(
        config,
        token=load_token(config.server, environ=lab.env),
        client_factory=client_factory,
        environ=lab.env,
        timings=FAST,
    )
    with running(daemon):
        wait_for("the study", lambda: lab.server.find_study(STUDY_UUID) is not None)
        wait_for("its components", lambda: len(lab.study().components) == 2)
        wait_for("the files", lambda: len(lab.server.files(lab.study())) == len(PAGES))
        wait_for("the first pass", lambda: daemon.workers["exp"].status.state == "idle")
        # An edit of a file is a quick pass: it never reads or changes the definition.
        lab.server.clear_requests()
        (lab.folder / "js" / "task.js").write_text("console.log('edited');")
        wait_for(
            "the upload",
            lambda: lab.server.files(lab.study())["js/task.js"] == b"console.log('edited');",
        )
        assert lab.server.count(kind="properties") == 0
        assert lab.server.count(kind="import") == 0
        # An edit of the configuration, then SIGHUP: the definition follows.
        lab.write(definition(title="Edited while watching"))
        lab.config_path.write_text(lab.config_path.read_text() + FAST_WATCH, encoding="utf-8")
        daemon.request_reload()
        wait_for("the new title", lambda: lab.study().title == "Edited while watching")
