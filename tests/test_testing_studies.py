"""The stand-in's study endpoints per personality: properties, import, export, create, patch,
delete (docs/jatos-api.md §10, §11), asserted on status codes, bodies and the server's files.

Also home of the small `Jatos` client and archive helpers the other test_testing_* modules
import.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from jatos_sync.testing import StandInServer

Factory = Callable[..., StandInServer]
ALL = ["3.8.2", "3.9", "3.10"]
STUDY_UUID = "3c8d5a2e-6f0b-4f5e-9a51-0d2f4c7b9e11"
INTRO_UUID = "a1f0c3e2-1b2c-4d5e-8f90-123456789abc"
OUTRO_UUID = "b2f0c3e2-1b2c-4d5e-8f90-123456789abc"


# ============================================================================ helpers


class Jatos:
    """A `requests` session with the stand-in's test token, and the answers per version."""

    def __init__(self, server: StandInServer, token: str | None = None) -> None:
        self.server = server
        self.token = token if token is not None else server.token
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        if self.token:
            self.session.headers["Authorization"] = f"Bearer {self.token}"

    @property
    def name(self) -> str:
        return self.server.personality.name

    @property
    def v310(self) -> bool:
        return self.name == "3.10"

    def url(self, rest: str) -> str:
        return f"{self.server.url}/jatos/api/v1/{rest}"

    def request(self, method: str, rest: str, **kw: Any) -> requests.Response:
        return self.session.request(method, self.url(rest), timeout=10, **kw)

    def get(self, rest: str, **kw: Any) -> requests.Response:
        return self.request("GET", rest, **kw)

    def import_jzip(
        self, archive: bytes, query: str = "", route: str = "study"
    ) -> requests.Response:
        files = {"study": ("study.jzip", archive, "application/octet-stream")}
        return self.request("POST", f"{route}{query}", files=files)

    def properties(self, ref: Any, *, full: bool = True) -> dict[str, Any]:
        flags = "?withComponentProperties=true&withBatchProperties=true" if full else ""
        r = self.get(f"studies/{ref}/properties{flags}")
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()["data"]
        return data

    def close(self) -> None:
        self.session.close()


def expect(
    r: requests.Response, jatos: Jatos, classic: tuple[int, str], v310: tuple[int, str, str | None]
) -> None:
    """A per-version error: 3.8/3.9 (status, text body); 3.10 (status, code, message)."""
    if jatos.v310:
        status, code, message = v310
        assert r.status_code == status, r.text
        error = r.json()["error"]
        assert error["code"] == code, r.text
        if message is not None:
            assert error["message"] == message
    else:
        status, text = classic
        assert (r.status_code, r.text) == (status, text)


def jas(
    *,
    study_uuid: str | None = STUDY_UUID,
    title: str = "Demo study",
    dir_name: str | None = "demo_study",
    components: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    data: dict[str, Any] = {"title": title}
    if study_uuid is not None:
        data = {"uuid": study_uuid, **data}
    if dir_name is not None:
        data["dirName"] = dir_name
    data.update(extra)
    data["componentList"] = (
        components
        if components is not None
        else [{"uuid": INTRO_UUID, "title": "Intro", "htmlFilePath": "intro.html"}]
    )
    return {"version": "3", "data": data}


def make_jzip(
    document: Any, files: dict[str, bytes | str] | None = None, jas_name: str = "demo.jas"
) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        text = document if isinstance(document, str) else json.dumps(document)
        zf.writestr(jas_name, text)
        for name, content in (files or {}).items():
            zf.writestr(name, content)
    return buf.getvalue()


def default_jzip(**kw: Any) -> bytes:
    return make_jzip(jas(**kw), {"demo_study/intro.html": "<p>intro</p>"})


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


def imported(jatos: Jatos, archive: bytes | None = None, query: str = "") -> dict[str, Any]:
    r = jatos.import_jzip(archive if archive is not None else default_jzip(), query)
    assert r.status_code in (200, 201), r.text
    return jatos.properties(STUDY_UUID)


# ======================================================= personalities (docs/jatos-api.md §1.4)


def test_3_8_alias_is_3_8_2_with_listing_and_api_version_1_0_0(
    make_jatos: Callable[..., Jatos],
) -> None:
    jatos = make_jatos(personality="3.8")
    assert jatos.name == "3.8.2"
    assert jatos.get("admin/token").json()["apiVersion"] == "1.0.0"
    study = jatos.server.study
    assert study is not None
    assert jatos.get(f"studies/{study.id}/assets/structure").status_code == 200


def test_3_8_2_does_not_check_the_lock_on_assets(make_jatos: Callable[..., Jatos]) -> None:
    jatos = make_jatos(personality="3.8.2")
    study = jatos.server.study
    assert study is not None
    jatos.server.set_locked(study, True)
    files = {"studyAssetsFile": ("a.txt", b"a")}
    assert jatos.request("POST", f"studies/{study.id}/assets/a.txt", files=files).status_code == 200


@pytest.mark.parametrize(
    ("method", "rest"),
    [
        ("DELETE", "studies/1"),
        ("POST", "studies/create"),
        ("POST", "studies/1/components/create"),
        ("PATCH", "studies/1/properties"),
        ("POST", "studies/1/components"),
        ("POST", "results/delete"),
    ],
)
def test_3_8_2_lacks_the_endpoints_of_later_versions(
    make_jatos: Callable[..., Jatos], method: str, rest: str
) -> None:
    jatos = make_jatos(personality="3.8.2")
    r = jatos.request(method, rest, json={"title": "x"})
    assert r.status_code == 404
    assert r.text.startswith("Requested page ")


# ================================================== properties (docs/jatos-api.md §10.1, §10.2)


def test_properties_have_each_versions_shape(jatos: Jatos) -> None:
    data = imported(jatos)
    batch = data["batches"][0]
    component = data["components"][0]
    if jatos.v310:
        assert data["description"] is None
        assert data["studyInput"] is None
        assert "jsonData" not in data and "componentList" not in data
        assert component["componentInput"] is None
        assert data["members"] == [{"id": 1, "username": "alice"}]
        assert batch["allowedWorkerTypes"] == ["PersonalMultiple", "PersonalSingle"]
    else:
        assert "description" not in data
        assert data["jsonData"] is None
        assert (data["componentList"], data["batchList"]) == (None, None)
        assert component["jsonData"] is None
        assert data["members"] == [{"username": "alice"}]
        assert batch["allowedWorkerTypes"] == ["Jatos", "PersonalMultiple", "PersonalSingle"]
    assert (component["uuid"], component["title"], component["htmlFilePath"]) == (
        INTRO_UUID,
        "Intro",
        "intro.html",
    )
    assert (batch["title"], batch["active"], batch["maxTotalWorkers"]) == ("Default", True, None)
    assert data["descriptionHash"] is None
    assert (data["locked"], data["active"], data["dirName"]) == (False, True, "demo_study")


def test_study_input_is_a_minified_string_before_3_10_and_parsed_json_in_3_10(jatos: Jatos) -> None:
    data = imported(jatos, default_jzip(jsonData='{ "lang" : "en" }', description="About"))
    if jatos.v310:
        assert data["studyInput"] == {"lang": "en"}
        assert data["description"] == "About"
    else:
        assert data["jsonData"] == '{"lang":"en"}'
    assert len(data["descriptionHash"]) == 64


def test_without_flags_components_and_batches_are_id_uuid_pairs(jatos: Jatos) -> None:
    data = imported(jatos)
    plain = jatos.properties(data["id"], full=False)
    assert plain["components"] == [{"id": data["components"][0]["id"], "uuid": INTRO_UUID}]
    assert set(plain["batches"][0]) == {"id", "uuid"}


def test_a_bad_boolean_flag_is_a_client_error(jatos: Jatos) -> None:
    study = jatos.server.study
    assert study is not None
    r = jatos.get(f"studies/{study.id}/properties?withComponentProperties=yes")
    expect(r, jatos, (400, "bad request"), (400, "CLIENT_ERROR", None))


def test_null_fields_vanish_from_properties_after_the_first_listing(
    make_jatos: Callable[..., Jatos],
) -> None:
    jatos = make_jatos(personality="3.9")
    study = jatos.server.study
    assert study is not None
    assert jatos.properties(study.id)["componentList"] is None
    jatos.get(f"studies/{study.id}/assets/structure")
    after = jatos.properties(study.id)
    assert "componentList" not in after and "comments" not in after


# =============================================================== import (docs/jatos-api.md §11)


def test_import_of_a_new_study_answers_per_version(jatos: Jatos) -> None:
    r = jatos.import_jzip(default_jzip())
    study = jatos.server._state.study_by_uuid(STUDY_UUID)
    assert study is not None
    if jatos.v310:
        assert r.status_code == 201
        assert r.json()["data"]["uuid"] == STUDY_UUID
    else:
        info = r.json()
        assert r.status_code == 200 and "apiVersion" not in info
        expected = {
            "studyExists": False,
            "uuid": STUDY_UUID,
            "uploadedStudyTitle": "Demo study",
            "uploadedDirName": "demo_study",
            "uploadedDirExists": False,
        }
        if jatos.name == "3.9":
            expected["id"] = study.id  # 3.9.7+ only
        assert info == expected
    assert jatos.server.files(study) == {"intro.html": b"<p>intro</p>"}
    assert study.members == {"alice"}
    assert [b.title for b in study.batches] == ["Default"]


def test_overwrite_with_defaults_deletes_assets_and_merges_components(jatos: Jatos) -> None:
    first = make_jzip(
        jas(
            components=[
                {"uuid": INTRO_UUID, "title": "Intro", "htmlFilePath": "intro.html"},
                {"uuid": OUTRO_UUID, "title": "Outro", "htmlFilePath": "outro.html"},
            ]
        ),
        {"demo_study/intro.html": "old", "demo_study/old.js": "x"},
    )
    before = imported(jatos, first)
    jatos.server.set_locked(before["id"], False)
    third = "c3f0c3e2-1b2c-4d5e-8f90-123456789abc"
    second = make_jzip(
        jas(
            title="New title",
            components=[
                {"uuid": third, "title": "New", "htmlFilePath": "new.html"},
                {
                    "uuid": INTRO_UUID,
                    "title": "Intro 2",
                    "htmlFilePath": "intro.html",
                    "active": False,
                },
            ],
        ),
        {"whatever/intro.html": "new"},
    )
    r = jatos.import_jzip(second)
    assert r.status_code == 200, r.text
    if not jatos.v310:
        assert r.json()["studyExists"] is True
        assert r.json()["currentStudyTitle"] == "Demo study"
    after = jatos.properties(STUDY_UUID)
    assert after["title"] == "New title"
    assert after["id"] == before["id"]
    names = [(c["uuid"], c["title"], c["active"]) for c in after["components"]]
    assert names == [
        (third, "New", True),
        (INTRO_UUID, "Intro 2", False),
        (OUTRO_UUID, "Outro", False),
    ]
    intro_id = next(c["id"] for c in before["components"] if c["uuid"] == INTRO_UUID)
    assert after["components"][1]["id"] == intro_id
    assert jatos.server.files(after["id"]) == {"intro.html": b"new"}  # old.js is gone


def test_overwrite_keeping_assets_changes_only_properties_and_components(jatos: Jatos) -> None:
    data = imported(jatos)
    jatos.server.put_file(data["id"], "extra.js", b"kept")
    r = jatos.import_jzip(make_jzip(jas(title="Renamed")), "?keepProperties=false&keepAssets=true")
    assert r.status_code == 200, r.text
    assert jatos.properties(data["id"])["title"] == "Renamed"
    assert jatos.server.files(data["id"]) == {"intro.html": b"<p>intro</p>", "extra.js": b"kept"}


def test_overwrite_with_an_archive_without_a_directory_leaves_the_assets_empty(
    jatos: Jatos,
) -> None:
    data = imported(jatos)
    r = jatos.import_jzip(make_jzip(jas()))
    assert r.status_code == 200, r.text
    assert jatos.server.files(data["id"]) == {}
    assert (jatos.server.assets_root / "demo_study").is_dir()


def test_overwrite_taking_the_archives_dir_name_loses_the_assets_if_it_is_taken(
    jatos: Jatos,
) -> None:
    data = imported(jatos)
    archive = make_jzip(jas(dir_name="moved"), {"x/intro.html": "moved"})
    r = jatos.import_jzip(archive, "?keepCurrentAssetsName=false")
    assert r.status_code == 200, r.text
    after = jatos.properties(data["id"])
    assert after["dirName"] == "moved"
    assert jatos.server.files(data["id"]) == {"intro.html": b"moved"}
    (jatos.server.assets_root / "taken").mkdir()  # another study's folder
    archive = make_jzip(jas(dir_name="taken"), {"x/intro.html": "lost"})
    r = jatos.import_jzip(archive, "?keepCurrentAssetsName=false")
    assert r.status_code == 500
    if jatos.name == "3.9":
        assert (
            r.text
            == "Study assets' directory (taken) couldn't be created because it already exists."
        )
    # the current assets were deleted before the move failed, and are not rolled back
    # (docs/jatos-api.md §11.3)
    assert not (jatos.server.assets_root / "moved").exists()
    assert jatos.properties(data["id"])["dirName"] == "moved"


def test_overwrite_with_both_keep_flags_changes_nothing(jatos: Jatos) -> None:
    data = imported(jatos)
    r = jatos.import_jzip(make_jzip(jas(title="Ignored")), "?keepProperties=true&keepAssets=true")
    assert r.status_code == 200
    assert jatos.properties(data["id"])["title"] == "Demo study"
    assert jatos.server.files(data["id"]) == {"intro.html": b"<p>intro</p>"}


def test_overwrite_keeps_lock_active_members_and_batches(jatos: Jatos) -> None:
    data = imported(jatos)
    server = jatos.server
    server.add_user("bob")
    server.add_member(data["id"], "bob")
    server.add_batch(data["id"], "Wave 2")
    r = jatos.import_jzip(default_jzip(title="Again"))
    assert r.status_code == 200
    after = jatos.properties(data["id"])
    assert [b["title"] for b in after["batches"]] == ["Default", "Wave 2"]
    assert len(after["members"]) == 2


def test_new_uuid_with_a_keep_flag_does_nothing_fails_or_imports_per_version(jatos: Jatos) -> None:
    r = jatos.import_jzip(default_jzip(), "?keepAssets=true")
    study = jatos.server._state.study_by_uuid(STUDY_UUID)
    if jatos.name == "3.8.2":
        assert r.status_code == 200  # silently nothing (docs/jatos-api.md §11.3)
        assert r.json()["studyExists"] is False
        assert study is None
    elif jatos.name == "3.9":
        assert r.status_code == 500
        assert r.text.startswith("Impossible to import study: no new study")
        assert study is None
    else:
        assert r.status_code == 201
        assert study is not None


def test_new_study_with_a_taken_dir_name_is_renamed_or_refused(jatos: Jatos) -> None:
    (jatos.server.assets_root / "demo_study").mkdir()
    (jatos.server.assets_root / "demo_study_2").mkdir()
    r = jatos.import_jzip(default_jzip(), "?renameAssets=false")
    expect(
        r,
        jatos,
        (
            403,
            "Study assets directory already exists but doesn't belong to the study and "
            "'renameAssets' is set to false.",
        ),
        (403, "FORBIDDEN", None),
    )
    r = jatos.import_jzip(default_jzip())
    assert r.status_code in (200, 201)
    if not jatos.v310:
        assert r.json()["newDirName"] == "demo_study_3"
        assert r.json()["uploadedDirExists"] is True
    assert jatos.properties(STUDY_UUID)["dirName"] == "demo_study_3"


def test_import_over_a_locked_study_is_refused(jatos: Jatos) -> None:
    data = imported(jatos)
    jatos.server.set_locked(data["id"], True)
    r = jatos.import_jzip(default_jzip(title="Changed"))
    expect(
        r,
        jatos,
        (403, f"Study with ID {data['id']} is locked. Unlock it if you want to make changes."),
        (403, "STUDY_LOCKED", "Study locked"),
    )
    assert jatos.properties(data["id"])["title"] == "Demo study"


def test_import_over_a_study_of_others_is_refused_even_for_their_uuid(jatos: Jatos) -> None:
    server = jatos.server
    server.add_user("bob")
    bob = Jatos(server, server.add_token("bob"))
    assert imported(bob)["members"][0]["username"] == "bob"
    r = jatos.import_jzip(default_jzip())
    if jatos.v310:
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "FORBIDDEN"
    else:
        assert r.status_code == 400
        assert r.text.startswith(
            "Import of study failed: The study you're trying to upload already exists but you "
            "aren't a user of it."
        )
    bob.close()


def test_a_component_uuid_of_another_study_is_refused(jatos: Jatos) -> None:
    imported(jatos)
    other = make_jzip(jas(study_uuid="99999999-6f0b-4f5e-9a51-0d2f4c7b9e11", dir_name="other"))
    r = jatos.import_jzip(other)
    message = (
        f"An component of the imported study has the same UUID ({INTRO_UUID}) as an existing "
        "component."
    )
    expect(r, jatos, (400, f"Import of study failed: {message}"), (403, "FORBIDDEN", message))


def test_a_missing_study_part_is_file_missing(jatos: Jatos) -> None:
    r = jatos.request("POST", "study", files={"other": ("s.jzip", default_jzip())})
    expect(r, jatos, (400, "File missing"), (400, "MISSING_FILE", "File missing"))


@pytest.mark.parametrize(
    ("case", "archive"),
    [
        ("no zip", b"not a zip at all"),
        ("escaping entry", make_jzip(jas(), {"../evil/intro.html": "x"})),
    ],
)
def test_unreadable_or_escaping_archives_fail_to_unpack(
    jatos: Jatos, case: str, archive: bytes
) -> None:
    r = jatos.import_jzip(archive)
    cause = "Import of study failed" if jatos.name == "3.8.2" else "Unpacking ZIP archive failed"
    expect(
        r,
        jatos,
        (400, f"Import of study failed: {cause}"),
        (400, "IMPORT_EXPORT_ERROR", "Unpacking ZIP archive failed"),
    )
    assert not (jatos.server.assets_root.parent / "evil").exists()


def test_an_archive_needs_exactly_one_root_jas(jatos: Jatos) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.jas", json.dumps(jas()))
        zf.writestr("b.jas", json.dumps(jas()))
    expected_310 = (400, "VALIDATION_ERROR", "File is not a valid JATOS study")
    for archive in (buf.getvalue(), make_jzip(jas(), jas_name="demo_study/nested.jas")):
        r = jatos.import_jzip(archive)
        expect(r, jatos, (400, "Import of study failed: Study is invalid"), expected_310)


def test_extra_root_files_count_as_directories_before_3_10(jatos: Jatos) -> None:
    archive = make_jzip(jas(), {"demo_study/intro.html": "i", "README.md": "hello"})
    r = jatos.import_jzip(archive)
    if jatos.v310:
        assert r.status_code == 201
        assert jatos.server.files(jatos.properties(STUDY_UUID)["id"]) == {"intro.html": b"i"}
    else:
        assert r.status_code == 500
        if jatos.name == "3.9":
            assert r.text == "There are more than one directory in the ZIP file."
        else:
            assert r.text.startswith("Internal JATOS error during ")


def test_a_lone_root_file_becomes_the_assets_before_3_10(make_jatos: Callable[..., Jatos]) -> None:
    jatos = make_jatos(personality="3.9")
    r = jatos.import_jzip(make_jzip(jas(), {"README.md": "hello"}))
    assert r.status_code == 200
    target = jatos.server.assets_root / "demo_study"
    assert target.is_file() and target.read_text() == "hello"
    r = jatos.get(f"studies/{r.json()['id']}/assets/structure")
    assert (r.status_code, r.text) == (404, "Study assets directory couldn't be found")


def test_two_root_directories_are_an_io_error(jatos: Jatos) -> None:
    archive = make_jzip(jas(), {"demo_study/intro.html": "i", "__MACOSX/._intro.html": "x"})
    r = jatos.import_jzip(archive)
    assert r.status_code == 500
    if jatos.v310:
        assert (
            r.json()["error"]["message"]
            == "IO error: There are more than one directory in the ZIP file."
        )


def test_directory_entries_are_not_needed_and_empty_dirs_are_kept(jatos: Jatos) -> None:
    archive = make_jzip(jas(), {"demo_study/img/": "", "demo_study/a/b/c.txt": "c"})
    data = imported(jatos, archive)
    assert jatos.server.files(data["id"]) == {"a/b/c.txt": b"c"}
    assert (jatos.server.assets_root / "demo_study" / "img").is_dir()


# ----------------------------------------------------------- the .jas (docs/jatos-api.md §11.6)


def test_a_newer_jas_version_is_refused(jatos: Jatos) -> None:
    document = jas()
    document["version"] = "4"
    r = jatos.import_jzip(make_jzip(document))
    message = "This study is from an newer version of JATOS. Try updating your JATOS."
    expect(
        r,
        jatos,
        (400, f"Import of study failed: {message}"),
        (500, "IO_ERROR", f"IO error: {message}"),
    )


def test_version_is_found_depth_first_so_it_must_come_first(jatos: Jatos) -> None:
    document = jas()
    document["data"]["componentList"][0]["version"] = "7"  # found before the top-level one
    text = json.dumps({"data": document["data"], "version": "3"})
    r = jatos.import_jzip(make_jzip(text))
    assert r.status_code in (400, 500)
    assert "newer version" in r.text


def test_jas_that_is_not_json_is_refused(jatos: Jatos) -> None:
    r = jatos.import_jzip(make_jzip("{not json"))
    if jatos.v310:
        assert (r.status_code, r.json()["error"]["code"]) == (400, "INVALID_JSON")
    else:
        assert r.status_code == 400 and r.text.startswith("Import of study failed: ")


def test_study_input_alias_is_read_by_3_10_and_dropped_before(jatos: Jatos) -> None:
    data = imported(jatos, default_jzip(studyInput='{"a":1}'))
    if jatos.v310:
        assert data["studyInput"] == {"a": 1}
    else:
        assert data["jsonData"] is None


def test_missing_uuid_means_a_new_random_study_or_a_500_on_3_8_2(jatos: Jatos) -> None:
    archive = make_jzip(jas(study_uuid=None), {"demo_study/intro.html": "i"})
    first = jatos.import_jzip(archive)
    second = jatos.import_jzip(make_jzip(jas(study_uuid=None, components=[]), {"d/x": "x"}))
    if jatos.name == "3.8.2":
        assert first.status_code == 500
        return
    assert first.status_code in (200, 201) and second.status_code in (200, 201)
    titles = [s["title"] for s in jatos.get("studies/properties").json()["data"]]
    assert titles.count("Demo study") == 2


def test_missing_dir_name_is_invalid_on_3_8_2_and_a_uuid_later(jatos: Jatos) -> None:
    r = jatos.import_jzip(make_jzip(jas(dir_name=None)))
    if jatos.name == "3.8.2":
        assert (r.status_code, r.text) == (400, "Import of study failed: Study is invalid")
        return
    assert r.status_code in (200, 201)
    dir_name = jatos.properties(STUDY_UUID)["dirName"]
    assert len(dir_name) == 36 and dir_name != STUDY_UUID


def test_an_html_file_path_with_two_dots_is_refused_from_3_9_on(jatos: Jatos) -> None:
    bad = [{"uuid": INTRO_UUID, "title": "Intro", "htmlFilePath": "main.min.html"}]
    r = jatos.import_jzip(make_jzip(jas(components=bad)))
    if jatos.name == "3.8.2":
        assert r.status_code == 200  # components are not validated on import
    elif jatos.name == "3.9":
        assert (r.status_code, r.text) == (400, "Import of study failed: Component is invalid")
    else:
        assert (r.status_code, r.json()["error"]["code"]) == (500, "UNEXPECTED_ERROR")


@pytest.mark.parametrize(
    "bad",
    [
        {"title": "  "},
        {"jsonData": "{oops"},
        {"dirName": "has space"},
        {"dirName": "jatos"},
        {"title": "<b>x</b>"},
    ],
)
def test_an_invalid_study_is_refused(jatos: Jatos, bad: dict[str, Any]) -> None:
    r = jatos.import_jzip(make_jzip(jas(**bad)))
    expect(
        r,
        jatos,
        (400, "Import of study failed: Study is invalid"),
        (400, "VALIDATION_ERROR", "Study is invalid"),
    )


def test_a_batch_without_worker_types_allows_none_on_3_10_only(jatos: Jatos) -> None:
    batch = {"uuid": "dddddddd-1b2c-4d5e-8f90-123456789abc", "title": "Only"}
    data = imported(jatos, make_jzip(jas(batchList=[batch])))
    (only,) = data["batches"]
    assert only["uuid"] == batch["uuid"]
    assert only["allowedWorkerTypes"] == (
        [] if jatos.v310 else ["Jatos", "PersonalMultiple", "PersonalSingle"]
    )


# ---------------------------------------------------------------------------- 3.10 bodies


def test_3_10_imports_a_raw_zip_on_post_studies(make_jatos: Callable[..., Jatos]) -> None:
    jatos = make_jatos(personality="3.10")
    for ctype in ("application/zip", "application/octet-stream", None):
        headers = {"Content-Type": ctype} if ctype else {}
        r = jatos.request("POST", "studies", data=default_jzip(), headers=headers)
        assert r.status_code in (200, 201), (ctype, r.text)
    r = jatos.request("POST", "studies", data=b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert r.json()["error"] == {
        "code": "WRONG_CONTENT_TYPE",
        "message": "Wrong 'Content-Type' text/plain",
    }


def test_3_8_and_3_9_need_multipart(make_jatos: Callable[..., Jatos]) -> None:
    jatos = make_jatos(personality="3.9")
    r = jatos.request(
        "POST", "study", data=default_jzip(), headers={"Content-Type": "application/zip"}
    )
    assert (r.status_code, r.text) == (400, "File missing")


# ============================================================= export (docs/jatos-api.md §11.1)


def test_export_writes_the_assets_and_the_versions_jas(jatos: Jatos) -> None:
    data = imported(
        jatos,
        make_jzip(
            jas(jsonData='{"a":1}'), {"demo_study/intro.html": "i", "demo_study/img/x.png": "p"}
        ),
    )
    (jatos.server.assets_root / "demo_study" / "empty").mkdir()
    jatos.server.set_locked(data["id"], True)  # the lock is not checked
    r = jatos.get(f"studies/{data['id']}")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/zip"
    assert r.headers["Content-Length"] == str(len(r.content))
    assert (
        r.headers["Content-Disposition"] == f'attachment; filename="jatos_study_{STUDY_UUID}.jzip"'
    )
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    names = zf.namelist()
    (jas_name,) = [n for n in names if n.endswith(".jas")]
    assert sorted(n for n in names if n != jas_name) == [
        "demo_study/img/x.png",
        "demo_study/intro.html",
    ]
    assert jas_name.startswith("demo_study") and "/" not in jas_name
    document = json.loads(zf.read(jas_name))
    assert list(document) == ["version", "data"]
    assert document["version"] == "3"
    study_json = document["data"]
    key = "studyInput" if jatos.v310 else "jsonData"
    assert study_json[key] == '{"a":1}'
    assert study_json["componentList"][0]["uuid"] == INTRO_UUID
    assert len(study_json["batchList"]) == 1
    assert not {"id", "locked", "active"} & set(study_json)


def test_an_export_reimports_as_the_same_study(jatos: Jatos) -> None:
    data = imported(jatos)
    archive = jatos.get(f"studies/{data['id']}").content
    r = jatos.import_jzip(archive, "?keepProperties=false&keepAssets=true")
    assert r.status_code == 200, r.text
    assert jatos.properties(data["id"])["components"] == data["components"]


def test_short_titles_cannot_be_exported_before_3_10(jatos: Jatos) -> None:
    data = imported(jatos, default_jzip(title=" ab "))
    r = jatos.get(f"studies/{data['id']}")
    if jatos.v310:
        assert r.status_code == 200
    else:
        assert r.status_code == 500
        assert r.text.startswith("Internal JATOS error during ")


# =================================================== create from JSON (docs/jatos-api.md §10.3)


def test_3_9_creates_with_dir_name_uuid_and_answers_uuid_and_id(
    make_jatos: Callable[..., Jatos],
) -> None:
    jatos = make_jatos(personality="3.9")
    body = {
        "title": "Made",
        "dirName": "ignored",
        "jsonData": '{"x": 1}',
        "active": False,
        "unknown": 1,
    }
    r = jatos.request("POST", "studies/create", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == {"uuid", "id"}
    data = jatos.properties(answer["id"])
    assert data["dirName"] == answer["uuid"]
    assert (data["jsonData"], data["active"]) == ('{"x":1}', True)
    assert (jatos.server.assets_root / answer["uuid"]).is_dir()
    r = jatos.request("POST", "studies/create", json={"title": " "})
    assert (r.status_code, r.text) == (400, "Missing title")


def test_3_10_creates_from_json_strictly(make_jatos: Callable[..., Jatos]) -> None:
    jatos = make_jatos(personality="3.10")
    body = {"title": "Made", "dirName": "made", "studyInput": {"lang": "en"}, "active": False}
    r = jatos.request("POST", "studies", json=body)
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    assert (data["dirName"], data["studyInput"], data["active"]) == ("made", {"lang": "en"}, False)
    again = jatos.request("POST", "studies", json=body).json()["data"]
    assert again["dirName"] == "made_2"
    r = jatos.request("POST", "studies?renameAssets=false", json=body)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "FORBIDDEN")
    r = jatos.request("POST", "studies/create", json=body)  # deprecated: never renames
    assert r.status_code == 403
    r = jatos.request("POST", "studies", json={"title": "x", "colour": "red"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "INVALID_JSON")
    r = jatos.request("POST", "studies", json={"title": 5})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "INVALID_JSON")
    r = jatos.request("POST", "studies", json={"dirName": "x"})
    assert r.json()["error"] == {
        "code": "VALIDATION_ERROR",
        "message": "Error in field 'title' - Missing title",
    }


# ============================================================== PATCH (docs/jatos-api.md §10.4)


def test_3_10_patch_reactivates_unless_active_is_sent_and_renames_the_folder(
    make_jatos: Callable[..., Jatos],
) -> None:
    jatos = make_jatos(personality="3.10")
    data = imported(jatos)
    rest = f"studies/{data['id']}/properties"
    r = jatos.request("PATCH", rest, json={"active": False, "comments": "c"})
    assert r.status_code == 200 and r.json()["data"]["active"] is False
    r = jatos.request("PATCH", rest, json={"title": "T2"})
    assert r.json()["data"]["active"] is True  # not pre-filled: omitted means true
    assert r.json()["data"]["comments"] == "c"
    r = jatos.request("PATCH", rest, json={"dirName": "renamed", "active": True, "locked": True})
    assert r.json()["data"]["dirName"] == "renamed" and r.json()["data"]["locked"] is False
    assert (jatos.server.assets_root / "renamed" / "intro.html").read_bytes() == b"<p>intro</p>"
    assert not (jatos.server.assets_root / "demo_study").exists()
    (jatos.server.assets_root / "taken").mkdir()
    r = jatos.request("PATCH", rest, json={"dirName": "taken"})
    assert (r.status_code, r.json()["error"]["code"]) == (500, "IO_ERROR")
    r = jatos.request("PATCH", rest, json={"colour": "red"})
    assert r.json()["error"] == {"code": "VALIDATION_ERROR", "message": "Error in field 'colour'"}
    jatos.server.set_locked(data["id"], True)
    r = jatos.request("PATCH", rest, json={"active": True})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "STUDY_LOCKED")


# ======================================================= delete, HEAD (docs/jatos-api.md §10.5)


def test_delete_study_removes_assets_and_results_and_respects_the_lock(jatos: Jatos) -> None:
    data = imported(jatos)
    server = jatos.server
    run = server.start_run(data["id"])
    server.start_component(run)
    server.add_result_file(run, "f.txt", b"f")
    server.set_locked(data["id"], True)
    r = jatos.request("DELETE", f"studies/{data['id']}")
    if jatos.name == "3.8.2":
        assert r.status_code == 404
        return
    expect(
        r,
        jatos,
        (403, f"Study with ID {data['id']} is locked. Unlock it if you want to make changes."),
        (403, "STUDY_LOCKED", None),
    )
    server.set_locked(data["id"], False)
    r = jatos.request("DELETE", f"studies/{data['id']}")
    assert r.status_code == 200
    if jatos.v310:
        assert r.json() == {"apiVersion": "1.1.0", "message": "Study deleted successfully"}
    else:
        assert r.content == b""
    assert not (server.assets_root / "demo_study").exists()
    assert server.study_results() == []
    assert list(server.uploads_root.iterdir()) == []


def test_head_study_is_admin_only_on_3_10(make_jatos: Callable[..., Jatos]) -> None:
    jatos = make_jatos(personality="3.10")
    study = jatos.server.study
    assert study is not None
    assert jatos.request("HEAD", f"studies/{study.id}").status_code == 401
    jatos.server.add_user("root", roles=("ADMIN",))
    admin = Jatos(jatos.server, jatos.server.add_token("root"))
    assert admin.request("HEAD", f"studies/{study.id}").status_code == 204
    assert admin.request("HEAD", "studies/999").status_code == 404
    admin.close()
