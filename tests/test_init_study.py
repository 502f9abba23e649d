"""`init --create`, `init --from FILE.jzip` and `init --adopt` (jatos_sync/init/study.py),
through the CLI in process against the stand-in: what they write, what they create or
unpack, and that what they write reads back exactly (or nothing is written)."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from jatos_sync.cli import main
from jatos_sync.config import parse_config
from jatos_sync.definition import ComponentDef, Definition, json_text
from jatos_sync.init.render import Answers, render_config
from jatos_sync.init.study import check_written
from jatos_sync.testing import StandInServer
from tests.conftest import Run, assert_no_token

STUDY_UUID = "3c8d5a2e-6f0b-4f5e-9a51-0d2f4c7b9e11"


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@dataclass
class Setup:
    server: StandInServer
    token: str
    tmp: Path
    env: dict[str, str]

    @property
    def config_path(self) -> Path:
        return self.tmp / "jatos-sync.yaml"

    def run(self, *args: str, stdin: io.StringIO | None = None) -> Run:
        out, err = io.StringIO(), io.StringIO()
        code = main(
            ["-c", str(self.config_path), *args],
            environ=self.env,
            stdout=out,
            stderr=err,
            stdin=stdin if stdin is not None else io.StringIO(),
        )
        assert_no_token({self.token}, out.getvalue() + err.getvalue(), "CLI output")
        return Run(code, out.getvalue(), err.getvalue())

    def written(self) -> dict[str, Any]:
        mapping: dict[str, Any] = yaml.safe_load(self.config_path.read_text())["mappings"][0]
        return mapping

    def folder(self, name: str, pages: dict[str, str]) -> Path:
        folder = self.tmp / name
        for rel, text in pages.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(text)
        folder.mkdir(exist_ok=True)
        return folder


@pytest.fixture(params=["3.9", "3.10"])
def setup(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Setup]:
    monkeypatch.chdir(tmp_path)  # a folder given by default lands here, not in the checkout
    with StandInServer(personality=request.param, data_dir=tmp_path / "server") as server:
        server.add_user("alice")
        token = server.add_token("alice")
        home = tmp_path / "home"
        home.mkdir()
        env = {
            "JATOS_TOKEN": token,
            "HOME": str(home),
            "JATOS_SYNC_STATE_DIR": str(tmp_path / "state"),
        }
        yield Setup(server, token, tmp_path, env)


# ------------------------------------------------------------------------------ --create


def test_create_interactively_asks_for_the_title_and_skips_pages_jatos_cannot_serve(
    setup: Setup,
) -> None:
    folder = setup.folder(
        "task",
        {
            "index.html": "<title>  Main &amp; only </title>",
            "about.html": "<p>no title</p>",
            "main.min.html": "<p>built</p>",
            "nested/inner.html": "<p>not top level</p>",
        },
    )
    answers = FakeTerminal(f"{setup.server.url}\n\n{folder}\nMy flanker task\n")
    result = setup.run("init", "--create", stdin=answers)
    assert result.code == 0, result.out + result.err
    assert "main.min.html cannot be a component" in result.out
    definition = setup.written()["definition"]
    assert definition["title"] == "My flanker task"
    assert [(c["title"], c["html"]) for c in definition["components"]] == [
        ("Main & only", "index.html"),
        ("About", "about.html"),
    ]
    study = setup.server.find_study(setup.written()["study"])
    assert study is not None and study.title == "My flanker task"
    assert "nested/inner.html" in setup.server.files(study)
    assert re.search(r"jatos-sync .*links task", result.out)
    assert re.search(r"jatos-sync .*export task", result.out)


def test_create_of_a_folder_without_pages_makes_a_study_without_components(setup: Setup) -> None:
    folder = setup.folder("empty", {"data.csv": "a,b\n"})
    result = setup.run("init", "--create", "--url", setup.server.url, "--folder", str(folder))
    assert result.code == 0, result.out + result.err
    assert "has no HTML page at its top level" in result.out
    assert setup.written()["definition"]["components"] == []


def test_create_refuses_a_title_jatos_would_refuse_and_writes_nothing(setup: Setup) -> None:
    folder = setup.folder("x", {"index.html": "<p>x</p>"})
    result = setup.run(
        "init", "--create", "--url", setup.server.url, "--folder", str(folder), "--title", "ab"
    )
    assert result.code == 2 and "--title" in result.err and "at least 3" in result.err
    assert not setup.config_path.exists()


def test_create_without_a_terminal_names_the_missing_flag(setup: Setup) -> None:
    result = setup.run("init", "--create")
    assert result.code == 2
    assert "give --url" in result.err and "init --create --url" in result.err


def test_the_modes_exclude_each_other(setup: Setup) -> None:
    result = setup.run("init", "--create", "--adopt")
    assert result.code == 2 and "not allowed with" in result.err


# ------------------------------------------------------------------------------ --from


def builder_archive(path: Path, jas: dict[str, Any], files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("experiment.jas", json.dumps(jas))
        for name, text in files.items():
            zf.writestr(name, text)
    return path


BUILDER_JAS = {
    "version": "3",
    "data": {
        "uuid": STUDY_UUID,
        "title": "Built with a builder",
        "dirName": "built",
        "jsonData": '{"trials": 8}',
        "componentList": [{"title": "Experiment", "htmlFilePath": "index.html"}],
    },
}


def test_from_a_builder_archive_keeps_its_uuid_and_a_sync_creates_exactly_that_study(
    setup: Setup,
) -> None:
    archive = builder_archive(
        setup.tmp / "build.jzip",
        BUILDER_JAS,
        {"built/index.html": "<p>exp</p>", "built/js/a.js": "a", "__MACOSX/built/._a": "x"},
    )
    result = setup.run("init", "--from", str(archive), "--url", setup.server.url)
    assert result.code == 0, result.out + result.err
    assert "does not exist on this server yet" in result.out  # check, before the first sync
    mapping = setup.written()
    assert (mapping["study"], mapping["create"]) == (STUDY_UUID, True)
    assert mapping["definition"]["input"] == {"trials": 8}
    folder = Path(setup.config_path.parent / mapping["folder"])
    assert folder.name == "built" and (folder / "js" / "a.js").read_text() == "a"
    assert not (folder / "__MACOSX").exists()
    synced = setup.run("sync")
    assert synced.code == 0, synced.out + synced.err
    study = setup.server.find_study(STUDY_UUID)
    assert study is not None and study.title == "Built with a builder"
    assert [(c.title, c.html_file_path) for c in study.components] == [("Experiment", "index.html")]


def test_from_an_archive_with_an_escaping_entry_writes_nothing_anywhere(setup: Setup) -> None:
    target = setup.tmp / "target"
    archive = builder_archive(
        setup.tmp / "evil.jzip",
        BUILDER_JAS,
        {"built/index.html": "<p>exp</p>", "built/../../escaped.txt": "gotcha"},
    )
    result = setup.run(
        "init", "--from", str(archive), "--url", setup.server.url, "--folder", str(target)
    )
    assert result.code == 2 and "outside its folder" in result.err
    assert not target.exists() and not setup.config_path.exists()
    assert not list(setup.tmp.parent.rglob("escaped.txt"))


def test_from_an_archive_whose_component_page_is_missing_unpacks_nothing(setup: Setup) -> None:
    archive = builder_archive(setup.tmp / "b.jzip", BUILDER_JAS, {"built/other.html": "x"})
    target = setup.tmp / "target"
    result = setup.run(
        "init", "--from", str(archive), "--url", setup.server.url, "--folder", str(target)
    )
    assert result.code == 2 and "(index.html) is not in the archive" in result.err
    assert not target.exists()


def test_from_an_archive_never_replaces_a_local_file_with_other_content(setup: Setup) -> None:
    archive = builder_archive(setup.tmp / "b.jzip", BUILDER_JAS, {"built/index.html": "new"})
    target = setup.folder("mine", {"index.html": "my own version"})
    result = setup.run(
        "init", "--from", str(archive), "--url", setup.server.url, "--folder", str(target)
    )
    assert result.code == 2 and "other versions of 1 file" in result.err
    assert (target / "index.html").read_text() == "my own version"
    assert not setup.config_path.exists()


# ------------------------------------------------------------------------------ --adopt


def test_adopt_writes_the_existing_study_as_code_and_the_next_sync_changes_nothing(
    setup: Setup,
) -> None:
    study = setup.server.add_study("Running study", members=["alice"], dir_name="running")
    study.description = "Hidden from 3.9's API, kept in its export"
    study.input = '{"lang":"en"}'
    setup.server.put_file(study, "index.html", b"<p>task</p>")
    setup.server.put_file(study, "consent.html", b"<p>consent</p>")
    consent = setup.server.add_component(study, "Consent", html_file_path="consent.html")
    setup.server.add_component(
        study, "Task", html_file_path="index.html", active=False, component_input='{"block":1}'
    )
    folder = setup.tmp / "adopted"
    result = setup.run(
        "init",
        "--adopt",
        "--url",
        setup.server.url,
        "--study",
        str(study.id),
        "--folder",
        str(folder),
    )
    assert result.code == 0, result.out + result.err
    mapping = setup.written()
    assert mapping["study"] == study.uuid and "create" not in mapping
    definition = mapping["definition"]
    assert definition["description"] == "Hidden from 3.9's API, kept in its export"
    assert definition["input"] == {"lang": "en"}
    assert definition["components"] == [
        {"title": "Consent", "html": "consent.html", "uuid": consent.uuid},
        {
            "title": "Task",
            "html": "index.html",
            "uuid": study.components[1].uuid,
            "input": {"block": 1},
            "active": False,
        },
    ]
    assert (folder / "consent.html").read_text() == "<p>consent</p>"
    setup.server.clear_requests()
    synced = setup.run("sync")
    assert synced.code == 0, synced.out + synced.err
    assert [r for r in setup.server.requests if r.method not in ("GET", "HEAD")] == []
    assert study.description == "Hidden from 3.9's API, kept in its export"


def test_adopt_keeps_local_files_that_differ(setup: Setup) -> None:
    study = setup.server.add_study("Running study", members=["alice"])
    setup.server.put_file(study, "index.html", b"<p>server</p>")
    setup.server.add_component(study, "Task", html_file_path="index.html")
    folder = setup.folder("mine", {"index.html": "<p>local edit</p>"})
    result = setup.run(
        "init",
        "--adopt",
        "--url",
        setup.server.url,
        "--study",
        study.uuid,
        "--folder",
        str(folder),
    )
    assert result.code == 0, result.out + result.err
    assert "Kept 1 local file(s) that differ" in result.out
    assert (folder / "index.html").read_text() == "<p>local edit</p>"


def test_adopt_needs_the_token(setup: Setup) -> None:
    study = setup.server.add_study("Running study", members=["alice"])
    setup.env.pop("JATOS_TOKEN")
    result = setup.run("init", "--adopt", "--url", setup.server.url, "--study", str(study.id))
    assert result.code == 2 and "needs the API token" in result.err


# ------------------------------------------------------------------------------ the file

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
texts = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="<"), min_size=3, max_size=20
).filter(lambda t: t.strip() and len(t.strip()) >= 3)


@settings(max_examples=150, deadline=None)
@given(study_input=json_values, component_input=json_values, title=texts, comments=texts)
def test_what_init_writes_reads_back_exactly(
    tmp_path_factory: pytest.TempPathFactory,
    study_input: Any,
    component_input: Any,
    title: str,
    comments: str,
) -> None:
    folder = tmp_path_factory.mktemp("exp")
    (folder / "index.html").write_text("x")
    definition = Definition(
        title=title,
        comments=comments,
        input=json_text(study_input),
        components=(
            ComponentDef(
                "Task",
                "index.html",
                input=json_text(component_input),
                uuid="a1f0c3e2-1b2c-4d5e-8f90-123456789abc",
            ),
        ),
    )
    answers = Answers(
        url="https://jatos.example.org",
        folder=folder,
        study=STUDY_UUID,
        name="exp",
        create=True,
        definition=definition,
    )
    config_path = folder.parent / "jatos-sync.yaml"
    text = render_config(answers, config_path=config_path)
    check_written(parse_config(text, path=config_path), answers)  # the same, always
