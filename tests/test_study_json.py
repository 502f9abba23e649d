"""study_json.py: reading JATOS's JSON about a study defensively — the study JSON of every
version (docs/jatos-api.md §10.2) and `.jas` files of every version
(docs/jatos-api.md §11.6) — and refusing what JATOS would not write or would refuse, with
the reason."""

from __future__ import annotations

from typing import Any

import pytest

from jatos_sync.definition import ComponentDef, Definition, description_hash
from jatos_sync.errors import DefinitionError, ServerUnavailableError
from jatos_sync.study_json import definition_from_jas, parse_study

STUDY_UUID = "3c8d5a2e-6f0b-4f5e-9a51-0d2f4c7b9e11"


def test_a_jas_of_any_version_becomes_a_definition() -> None:
    jas = {
        "version": "3",
        "data": {
            "uuid": STUDY_UUID.upper(),
            "title": "Stroop",
            "description": "Words",
            "dirName": "stroop",
            "linearStudy": True,
            "studyInput": '{"lang": "en"}',  # 3.10's name, as JSON text
            "componentList": [
                {
                    "uuid": "A1F0C3E2-1B2C-4D5E-8F90-123456789ABC",
                    "title": "Intro",
                    "htmlFilePath": "pages\\intro.html",
                    "jsonData": "[1, 2]",
                    "active": False,
                },
                {"title": "Task", "htmlFilePath": "index.html"},
            ],
            "batchList": [{"title": "Default"}],
        },
    }
    adopted = definition_from_jas(jas)
    assert adopted.uuid == STUDY_UUID and adopted.dir_name == "stroop"
    assert adopted.definition == Definition(
        title="Stroop",
        description="Words",
        input='{"lang":"en"}',
        linear=True,
        components=(
            ComponentDef(
                "Intro",
                "pages/intro.html",
                uuid="a1f0c3e2-1b2c-4d5e-8f90-123456789abc",
                input="[1,2]",
                active=False,
            ),
            ComponentDef("Task", "index.html"),
        ),
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"title": "Stroop", "componentList": [{"title": "X", "htmlFilePath": "../x.html"}]},
            "unsafe",
        ),
        ({"title": "Stroop", "componentList": [{"title": "X"}]}, "has no HTML file"),
        (
            {"title": "Stroop", "componentList": [{"title": "X", "htmlFilePath": "a.min.html"}]},
            "exactly one dot",
        ),
        ({"title": "Stroop", "jsonData": "{nope"}, "not valid JSON"),
        ({"title": "St"}, "at least 3"),
        ({"title": "Stroop", "uuid": "nope"}, "not a UUID"),
        ({"title": 5}, "not text"),
    ],
)
def test_a_jas_that_jatos_would_refuse_is_refused_with_the_reason(
    data: dict[str, Any], message: str
) -> None:
    with pytest.raises(DefinitionError, match=message):
        definition_from_jas({"version": "3", "data": data})


def test_the_study_json_of_3_9_and_3_10_read_alike() -> None:
    v39: dict[str, Any] = {
        "id": 12,
        "uuid": STUDY_UUID,
        "title": "Stroop",
        "dirName": "stroop",
        "locked": True,
        "active": True,
        "descriptionHash": description_hash("Words"),
        "jsonData": '{"a":1}',
        "componentList": None,
        "batchList": None,
        "components": [
            {
                "id": 31,
                "uuid": STUDY_UUID,
                "title": "Intro",
                "htmlFilePath": "pages\\intro.html",
                "jsonData": None,
                "reloadable": True,
                "active": True,
                "comments": None,
            }
        ],
        "batches": [
            {
                "id": 5,
                "uuid": STUDY_UUID,
                "title": "Default",
                "active": True,
                "allowedWorkerTypes": ["PersonalSingle"],
            }
        ],
    }
    v310 = {
        **{k: v for k, v in v39.items() if k not in ("jsonData", "componentList", "batchList")},
        "description": "Words",
        "studyInput": {"a": 1},
        "components": [{**v39["components"][0], "componentInput": None}],
    }
    old, new = parse_study(v39, what="s"), parse_study(v310, what="s")
    assert old.input == new.input == '{"a":1}'
    assert not old.description_shown and new.description == "Words"
    assert old.components == new.components
    assert old.components[0].html == "pages/intro.html"
    assert old.batches[0].worker_types == {"PersonalSingle"} and old.locked


def test_keys_jatos_leaves_out_once_it_omits_nulls_read_as_null() -> None:
    study = parse_study({"id": 1, "uuid": STUDY_UUID}, what="s")
    assert (study.title, study.input, study.components, study.active) == ("", None, (), True)


@pytest.mark.parametrize(
    "bad",
    [
        {"id": "1", "uuid": STUDY_UUID},
        {"id": 1, "uuid": "../../etc"},
        {
            "id": 1,
            "uuid": STUDY_UUID,
            "components": [{"id": 2, "uuid": STUDY_UUID, "htmlFilePath": "../../x.html"}],
        },
        {"id": 1, "uuid": STUDY_UUID, "components": {"id": 2}},
        {"id": 1, "uuid": STUDY_UUID, "title": ["x"]},
    ],
)
def test_a_study_json_that_jatos_would_not_write_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ServerUnavailableError, match="nothing was changed"):
        parse_study(bad, what="study 1")
