"""The stand-in's component and batch endpoints (docs/jatos-api.md §12, §10.5): 3.9.7+'s create
and delete, 3.10's full component and batch sets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.test_testing_studies import STUDY_UUID, Factory, Jatos, imported


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


@pytest.fixture
def j39(make_jatos: Callable[..., Jatos]) -> Jatos:
    return make_jatos(personality="3.9")


@pytest.fixture
def j310(make_jatos: Callable[..., Jatos]) -> Jatos:
    return make_jatos(personality="3.10")


def _run_with_file(jatos: Jatos, study_id: int, component_id: int) -> Any:
    server = jatos.server
    run = server.start_run(study_id)
    server.start_component(run, component_id)
    server.put_data(run, "d")
    server.add_result_file(run, "f.bin", b"f")
    return run


# ============================================================= 3.9.7+ (docs/jatos-api.md §12.1)


def test_3_9_creates_components_at_the_end_always_active(j39: Jatos) -> None:
    data = imported(j39)
    body = {
        "title": "Second",
        "htmlFilePath": "second.html",
        "active": False,
        "jsonData": '{"a": 1}',
    }
    r = j39.request("POST", f"studies/{data['id']}/components/create", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == {"uuid", "id"}
    components = j39.properties(data["id"])["components"]
    assert [c["title"] for c in components] == ["Intro", "Second"]
    assert (components[1]["active"], components[1]["jsonData"]) == (True, '{"a":1}')


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"htmlFilePath": "a.html"}, "Missing title"),
        ({"title": "x", "htmlFilePath": "lib.v2/index.html"}, None),
        ({"title": "x", "jsonData": "{bad"}, "Invalid JSON format"),
    ],
)
def test_3_9_component_validation_is_a_400_with_the_message(
    j39: Jatos, body: dict[str, Any], message: str | None
) -> None:
    data = imported(j39)
    r = j39.request("POST", f"studies/{data['id']}/components/create", json=body)
    assert r.status_code == 400
    if message is not None:
        assert r.text == message
    else:
        assert r.text.startswith("Not a valid path or filename.")


def test_3_9_component_create_needs_json_and_an_unlocked_study(j39: Jatos) -> None:
    data = imported(j39)
    rest = f"studies/{data['id']}/components/create"
    r = j39.request("POST", rest, data='{"title": "x"}', headers={"Content-Type": "text/plain"})
    assert r.status_code == 500  # asJson() is null
    j39.server.set_locked(data["id"], True)
    r = j39.request("POST", rest, json={"title": "x"})
    assert (r.status_code, r.text) == (
        403,
        f"Study with ID {data['id']} is locked. Unlock it if you want to make changes.",
    )


def test_3_9_delete_component_deletes_its_results_and_checks_the_study(j39: Jatos) -> None:
    data = imported(j39)
    component = data["components"][0]
    run = _run_with_file(j39, data["id"], component["id"])
    study = j39.server.study
    assert study is not None
    r = j39.request("DELETE", f"studies/{study.id}/components/{component['id']}")
    assert (r.status_code, r.text) == (403, "Component does not belong to study")
    r = j39.request("DELETE", f"studies/{STUDY_UUID}/components/{component['uuid']}")
    assert (r.status_code, r.content) == (200, b"")
    assert j39.properties(data["id"])["components"] == []
    assert j39.server.study_results() == [run]  # the emptied study result stays
    assert run.component_results == []
    assert list((j39.server.uploads_root).rglob("f.bin")) == []


# ==================================================== 3.10 components (docs/jatos-api.md §12.2)


def test_3_10_component_create_list_get(j310: Jatos) -> None:
    data = imported(j310)
    body = {
        "title": "Second",
        "htmlFilePath": "s.html",
        "componentInput": {"step": 1},
        "active": False,
    }
    r = j310.request("POST", f"studies/{data['id']}/components", json=body)
    assert r.status_code == 200  # not 201
    created = r.json()["data"]
    assert (created["componentInput"], created["active"]) == ({"step": 1}, False)
    listed = j310.get(f"studies/{data['id']}/components").json()["data"]
    assert [c["title"] for c in listed] == ["Intro", "Second"]
    assert j310.get(f"components/{created['uuid']}").json()["data"] == created
    r = j310.get("components/999999")
    assert r.json()["error"] == {"code": "NOT_FOUND", "message": "Component doesn't exist."}
    r = j310.request("POST", f"studies/{data['id']}/components", json={"title": "x", "order": 1})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "INVALID_JSON")
    r = j310.request(
        "POST", f"studies/{data['id']}/components", json={"title": "x", "htmlFilePath": "a b.html"}
    )
    assert r.json()["error"]["code"] == "VALIDATION_ERROR"
    assert r.json()["error"]["message"].startswith(
        "Error in field 'htmlFilePath' - Not a valid path"
    )


def test_3_10_patch_component_renames_the_html_file_only_when_asked(j310: Jatos) -> None:
    data = imported(j310)
    cid = data["components"][0]["id"]
    r = j310.request("PATCH", f"components/{cid}", json={"htmlFilePath": "moved.html"})
    assert r.json()["data"]["htmlFilePath"] == "moved.html"
    assert j310.server.files(data["id"]) == {"intro.html": b"<p>intro</p>"}
    r = j310.request("PATCH", f"components/{cid}", json={"htmlFilePath": "intro.html"})
    r = j310.request(
        "PATCH",
        f"components/{cid}",
        json={"htmlFilePath": "pages/start.html", "htmlFileRename": True},
    )
    assert r.status_code == 200, r.text
    assert j310.server.files(data["id"]) == {"pages/start.html": b"<p>intro</p>"}
    j310.server.put_file(data["id"], "taken.html", b"t")
    r = j310.request(
        "PATCH", f"components/{cid}", json={"htmlFilePath": "taken.html", "htmlFileRename": True}
    )
    assert (r.status_code, r.json()["error"]["code"]) == (500, "IO_ERROR")
    r = j310.request("PATCH", f"components/{cid}", json={"htmlFilePath": "  "})
    assert r.json()["data"]["htmlFilePath"] == ""
    r = j310.request("PATCH", f"components/{cid}", json={"reload": True})
    assert r.json()["error"] == {"code": "VALIDATION_ERROR", "message": "Error in field 'reload'"}


def test_3_10_a_component_created_without_a_path_cannot_get_one(j310: Jatos) -> None:
    data = imported(j310)
    r = j310.request("POST", f"studies/{data['id']}/components", json={"title": "No path"})
    cid = r.json()["data"]["id"]
    assert r.json()["data"]["htmlFilePath"] is None
    r = j310.request("PATCH", f"components/{cid}", json={"htmlFilePath": "late.html"})
    assert (r.status_code, r.json()["error"]["code"]) == (500, "UNEXPECTED_ERROR")


def test_3_10_delete_component_deletes_its_results(j310: Jatos) -> None:
    data = imported(j310)
    component = data["components"][0]
    run = _run_with_file(j310, data["id"], component["id"])
    j310.server.set_locked(data["id"], True)
    r = j310.request("DELETE", f"components/{component['id']}")
    assert (r.status_code, r.json()["error"]["code"]) == (403, "STUDY_LOCKED")
    j310.server.set_locked(data["id"], False)
    r = j310.request("DELETE", f"components/{component['id']}")
    assert r.json() == {"apiVersion": "1.1.0", "message": "Component deleted successfully"}
    assert run.component_results == []
    assert list(j310.server.uploads_root.rglob("f.bin")) == []


def test_3_10_non_members_get_no_access_to_components(j310: Jatos) -> None:
    data = imported(j310)
    j310.server.add_user("bob")
    bob = Jatos(j310.server, j310.server.add_token("bob"))
    r = bob.get(f"components/{data['components'][0]['id']}")
    assert (r.status_code, r.json()["error"]["code"]) == (403, "NO_ACCESS")
    bob.close()


# ======================================================= 3.10 batches (docs/jatos-api.md §10.5)


def test_3_10_batches_create_list_patch_delete(j310: Jatos) -> None:
    data = imported(j310)
    sid = data["id"]
    r = j310.request(
        "POST", f"studies/{sid}/batches", json={"title": "Wave 2", "maxTotalWorkers": 5}
    )
    assert r.status_code == 200  # not 201
    batch = r.json()["data"]
    assert (batch["allowedWorkerTypes"], batch["maxTotalWorkers"]) == ([], 5)
    listed = j310.get(f"studies/{sid}/batches").json()["data"]
    assert [b["title"] for b in listed] == ["Default", "Wave 2"]
    r = j310.request(
        "PATCH", f"batches/{batch['id']}", json={"allowedWorkerTypes": ["gs", "PersonalSingle"]}
    )
    assert r.json()["data"]["allowedWorkerTypes"] == ["GeneralSingle", "PersonalSingle"]
    r = j310.request(
        "PATCH", f"batches/{batch['uuid']}", json={"allowedWorkerTypes": ["GeneralMultiple"]}
    )
    assert r.json()["data"]["allowedWorkerTypes"] == ["GeneralMultiple"]  # replaced wholesale
    assert r.json()["data"]["title"] == "Wave 2"
    r = j310.request("PATCH", f"batches/{batch['id']}", json={"allowedWorkerTypes": ["Robot"]})
    assert r.json()["error"] == {
        "code": "VALIDATION_ERROR",
        "message": "Error in field 'allowedWorkerTypes' - Invalid worker type: Robot",
    }
    r = j310.request(
        "POST",
        f"studies/{sid}/batches",
        json={"maxTotalMembers": 1, "maxActiveMembers": 2, "title": "x"},
    )
    assert r.json()["error"]["message"].startswith("Error in field 'maxTotalMembers'")
    r = j310.request("DELETE", f"batches/{batch['id']}")
    assert r.json() == {"apiVersion": "1.1.0", "message": "Batch deleted successfully"}
    assert j310.get(f"batches/{batch['id']}").json()["error"]["message"] == "Batch doesn't exist."


def test_3_10_deleting_the_default_batch_takes_its_results_and_breaks_export(j310: Jatos) -> None:
    data = imported(j310)
    run = _run_with_file(j310, data["id"], data["components"][0]["id"])
    r = j310.request("DELETE", f"batches/{data['batches'][0]['id']}")
    assert r.status_code == 200
    assert j310.server.study_results() == []
    assert run.id not in j310.server._state.study_results
    r = j310.get(f"studies/{data['id']}")
    assert (r.status_code, r.json()["error"]["code"]) == (500, "UNEXPECTED_ERROR")
    r = j310.request("POST", f"studies/{data['id']}/studyCodes", json={"type": "pm"})
    assert r.status_code == 404


def test_3_10_batch_writes_need_an_unlocked_study(j310: Jatos) -> None:
    data = imported(j310)
    j310.server.set_locked(data["id"], True)
    r = j310.request("POST", f"studies/{data['id']}/batches", json={"title": "x"})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "STUDY_LOCKED")
    assert j310.get(f"studies/{data['id']}/batches").status_code == 200
