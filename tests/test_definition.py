"""definition.py: the pure core of the study as code — semantic comparison of inputs,
component matching, the plan and its route per version, the `.jas` document, and reading
a server's study and a `.jas` defensively. By table, plus an invariant: carrying out a
plan the way JATOS does leaves nothing to do."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jatos_sync.definition import (
    HIDDEN_DESCRIPTION,
    Change,
    ComponentDef,
    Definition,
    DefinitionPlan,
    ServerComponent,
    ServerStudy,
    describe,
    description_hash,
    dir_name_for,
    html_path_problem,
    jas_document,
    match_components,
    plan_definition,
    problems,
    same_input,
    same_json,
    title_problem,
)
from jatos_sync.model import API_VERSION_310, API_VERSION_382

V39 = "1.0.1"
STUDY_UUID = "3c8d5a2e-6f0b-4f5e-9a51-0d2f4c7b9e11"


def server_component(n: int, html: str, **changes: Any) -> ServerComponent:
    base = ServerComponent(
        id=n,
        uuid=f"00000000-0000-4000-8000-{n:012d}",
        title=html.removesuffix(".html").capitalize(),
        html=html,
        input=None,
        reloadable=False,
        active=True,
        comments=None,
    )
    return dataclasses.replace(base, **changes)


def server_study(*components: ServerComponent, **changes: Any) -> ServerStudy:
    base = ServerStudy(
        id=12,
        uuid=STUDY_UUID,
        title="Stroop",
        dir_name="stroop",
        locked=False,
        active=True,
        description=None,
        description_hash=None,
        description_shown=True,
        comments=None,
        input=None,
        end_redirect_url=None,
        entry_message=None,
        linear=False,
        allow_preview=False,
        group_study=False,
        components=components,
    )
    return dataclasses.replace(base, **changes)


def declared(*htmls: str, **changes: Any) -> Definition:
    components = tuple(
        ComponentDef(title=h.removesuffix(".html").capitalize(), html=h) for h in htmls
    )
    return dataclasses.replace(Definition(title="Stroop", components=components), **changes)


# ------------------------------------------------------------------------------ inputs


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}, True),  # key order does not matter
        (1, 1.0, True),
        (True, 1, False),  # a boolean is never a number
        (False, 0, False),
        ([1, 2], [2, 1], False),  # list order does
        ({"a": None}, {}, False),
        ("1", 1, False),
        (None, None, True),
        ({"a": {"b": True}}, {"a": {"b": 1}}, False),
    ],
)
def test_json_values_compare_semantically(a: Any, b: Any, same: bool) -> None:
    assert same_json(a, b) is same
    assert same_json(b, a) is same


def test_stored_inputs_compare_as_parsed_json() -> None:
    # JATOS minifies (docs/jatos-api.md §10.2).
    assert same_input('{"a": 1,  "b":2}', '{"b":2,"a":1}')
    assert same_input("", None)  # and turns "" into null
    assert not same_input('{"a":1}', '{"a":2}')
    assert not same_input("not json", '"not json"')


# ------------------------------------------------------------------------------ local rules


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("index.html", True),
        ("pages/consent_2.html", True),
        ("a-b/c.htm", True),
        ("main.min.html", False),  # exactly one dot (docs/jatos-api.md §11.6)
        ("lib.v2/index.html", False),
        ("my page.html", False),
        ("/index.html", False),
        ("index", False),
        ("ünïcode.html", False),
    ],
)
def test_html_paths_follow_jatos_rule(path: str, ok: bool) -> None:
    assert (html_path_problem(path) is None) is ok


def test_titles_follow_jatos_rules_and_a_study_title_needs_three_characters() -> None:
    assert title_problem("Stroop", study=True) is None
    assert title_problem("ab", study=False) is None
    assert "at least 3" in (title_problem("ab", study=True) or "")
    assert "no HTML" in (title_problem("<b>x</b> task", study=True) or "")
    assert "at most 255" in (title_problem("x" * 256, study=False) or "")
    assert "empty" in (title_problem("   ", study=False) or "")


def test_a_dir_name_is_one_every_jatos_accepts() -> None:
    assert dir_name_for("Stroop task (v2)", "fallback") == "Stroop_task_v2"
    assert dir_name_for("assets", "fallback") == "fallback"
    assert dir_name_for("öö", "fallback") == "fallback"
    assert dir_name_for("my_jas", "fallback") == "my_jas_study"  # never a second *jas


# ------------------------------------------------------------------------------ matching


def test_components_are_matched_by_uuid_then_by_html_active_first() -> None:
    a = server_component(1, "a.html")
    b_old = server_component(2, "b.html", active=False)
    b = server_component(3, "b.html")
    c = server_component(4, "c.html")
    wanted = (
        ComponentDef("C by uuid", "elsewhere.html", uuid=c.uuid.upper()),
        ComponentDef("B", "b.html"),
        ComponentDef("A", "a.html"),
        ComponentDef("New", "new.html"),
    )
    found, left = match_components(wanted, [a, b_old, b, c])
    assert found == [c, b, a, None]
    assert left == [b_old]


def test_a_declared_uuid_that_the_server_lacks_never_claims_by_page() -> None:
    a = server_component(1, "a.html")
    found, left = match_components(
        (ComponentDef("A", "a.html", uuid="11111111-1111-4111-8111-111111111111"),), [a]
    )
    assert found == [None] and left == [a]


# ------------------------------------------------------------------------------ plans


def test_a_study_in_step_has_an_empty_plan_on_every_version() -> None:
    study = server_study(server_component(1, "a.html"), server_component(2, "b.html"))
    for api in (API_VERSION_382, V39, API_VERSION_310):
        plan = plan_definition(declared("a.html", "b.html"), study, api_version=api)
        assert plan == DefinitionPlan(component_uuids=tuple(c.uuid for c in study.components))
        assert not plan.writes


def test_a_property_change_is_a_patch_naming_active_on_3_10_and_a_reimport_before() -> None:
    study = server_study(server_component(1, "a.html"), active=False)
    wanted = declared("a.html", title="Stroop 2", input='{"lang":"de"}')
    plan = plan_definition(wanted, study, api_version=API_VERSION_310)
    assert plan.study_patch == {"title": "Stroop 2", "studyInput": '{"lang":"de"}', "active": False}
    assert not plan.reimport and not plan.creates and not plan.updates
    assert plan.changes == (
        Change("changed", "title", "Stroop", "Stroop 2"),
        Change("changed", "input", None, {"lang": "de"}),
    )
    for api in (API_VERSION_382, V39):
        old = plan_definition(wanted, study, api_version=api)
        assert old.reimport and not old.study_patch and old.changes == plan.changes


def test_a_description_is_compared_by_its_hash_where_jatos_hides_it() -> None:
    hidden = server_study(
        description=None, description_hash=description_hash("Words"), description_shown=False
    )
    assert not plan_definition(declared(description="Words"), hidden, api_version=V39).writes
    plan = plan_definition(declared(description="Other"), hidden, api_version=V39)
    assert plan.changes == (Change("changed", "description", HIDDEN_DESCRIPTION, "Other"),)
    empty = dataclasses.replace(hidden, description_hash=None)
    assert not plan_definition(declared(description=""), empty, api_version=V39).writes


def test_empty_texts_and_nulls_are_the_same_to_jatos() -> None:
    study = server_study(comments="", end_redirect_url=None)
    assert not plan_definition(
        declared(comments=None, end_redirect_url=""), study, api_version=API_VERSION_310
    ).writes


def test_new_components_are_appended_on_3_10_unless_one_goes_before_an_existing_one() -> None:
    study = server_study(server_component(1, "a.html"))
    appended = plan_definition(declared("a.html", "b.html"), study, api_version=API_VERSION_310)
    assert appended.creates == (ComponentDef("B", "b.html"),) and not appended.reimport
    before = plan_definition(declared("b.html", "a.html"), study, api_version=API_VERSION_310)
    assert before.reimport and before.component_uuids == (None, study.components[0].uuid)
    assert not before.creates


def test_a_reorder_is_a_reimport_on_every_version_and_lists_the_moves() -> None:
    a, b = server_component(1, "a.html"), server_component(2, "b.html")
    for api in (API_VERSION_382, V39, API_VERSION_310):
        plan = plan_definition(declared("b.html", "a.html"), server_study(a, b), api_version=api)
        assert plan.reimport
        assert plan.component_uuids == (b.uuid, a.uuid)
        assert plan.changes == (
            Change("moved", None, 2, 1, "B"),
            Change("moved", None, 1, 2, "A"),
        )


def test_a_new_component_with_its_own_uuid_needs_an_import() -> None:
    chosen = "11111111-1111-4111-8111-111111111111"
    wanted = Definition(title="Stroop", components=(ComponentDef("A", "a.html", uuid=chosen),))
    plan = plan_definition(wanted, server_study(), api_version=API_VERSION_310)
    assert plan.reimport and plan.component_uuids == (chosen,)


def test_a_component_without_an_html_path_gets_one_by_import_on_3_10() -> None:
    study = server_study(dataclasses.replace(server_component(1, "a.html"), html=None))
    wanted = Definition(
        title="Stroop", components=(ComponentDef("A", "a.html", uuid=study.components[0].uuid),)
    )
    plan = plan_definition(wanted, study, api_version=API_VERSION_310)
    assert plan.reimport  # a PATCH of a null htmlFilePath fails (docs/jatos-api.md §12.2)


def test_a_changed_component_is_a_patch_of_its_changed_fields_on_3_10() -> None:
    study = server_study(server_component(1, "a.html", input='{"x":1}'))
    wanted = Definition(
        title="Stroop",
        components=(ComponentDef("Renamed", "a.html", input='{"x":2}', reloadable=True),),
    )
    plan = plan_definition(wanted, study, api_version=API_VERSION_310)
    assert plan.updates == (
        (1, {"title": "Renamed", "componentInput": '{"x":2}', "reloadable": True}),
    )
    assert [c.field for c in plan.changes] == ["title", "input", "reloadable"]


def test_removed_components_are_deactivated_and_deleted_only_when_allowed() -> None:
    a, b, old = (
        server_component(1, "a.html"),
        server_component(2, "b.html"),
        server_component(3, "c.html", active=False),
    )
    study = server_study(a, b, old)
    plain = plan_definition(declared("a.html"), study, api_version=API_VERSION_310)
    assert plain.deactivates == (2,) and not plain.deletes and not plain.withheld
    assert plain.changes == (Change("deactivated", component="B"),)
    asked = plan_definition(
        declared("a.html"),
        study,
        api_version=API_VERSION_310,
        delete_components=True,
        results={2: 7},
    )
    assert asked.withheld == (b, old) and asked.deactivates == (2,) and not asked.deletes
    assert Change("deletion withheld", component="B", results=7) in asked.changes
    allowed = plan_definition(
        declared("a.html"),
        study,
        api_version=V39,
        delete_components=True,
        allow_delete=True,
        results={2: 7},
    )
    assert allowed.deletes == (b, old) and not allowed.reimport and not allowed.deactivates
    assert allowed.changes == (
        Change("deleted", component="B", results=7),
        Change("deleted", component="C", results=0),
    )
    on_382 = plan_definition(
        declared("a.html"),
        study,
        api_version=API_VERSION_382,
        delete_components=True,
        allow_delete=True,
    )
    assert not on_382.deletes and not on_382.withheld and on_382.reimport


# ------------------------------------------------------------------------------ invariant


def _apply(study: ServerStudy, wanted: Definition, plan: DefinitionPlan) -> ServerStudy:
    """What JATOS does with a plan (docs/jatos-api.md §11.3, §12): a model of the server,
    for the invariant."""
    components = list(study.components)
    next_id = max((c.id for c in components), default=0) + 1
    if plan.reimport:
        rebuilt = []
        for c, uuid in zip(wanted.components, plan.component_uuids, strict=True):
            old = next((s for s in components if s.uuid == uuid), None) if uuid else None
            if old is None:
                old = server_component(
                    next_id, c.html, uuid=uuid or f"00000000-0000-4000-9000-{next_id:012d}"
                )
                next_id += 1
            else:
                components.remove(old)
            rebuilt.append(_as_server(old, c))
        components = rebuilt + [dataclasses.replace(c, active=False) for c in components]
    else:
        for component_id, body in plan.updates:
            components = [_patched(c, body) if c.id == component_id else c for c in components]
        components = [
            dataclasses.replace(c, active=False) if c.id in plan.deactivates else c
            for c in components
        ]
        for c in plan.creates:
            components.append(
                _as_server(
                    server_component(
                        next_id, c.html, uuid=f"00000000-0000-4000-9000-{next_id:012d}"
                    ),
                    c,
                )
            )
            next_id += 1
    deleted = {c.id for c in plan.deletes}
    components = [c for c in components if c.id not in deleted]
    return dataclasses.replace(
        study,
        title=wanted.title,
        input=wanted.input,
        components=tuple(components),
    )


def _as_server(s: ServerComponent, c: ComponentDef) -> ServerComponent:
    return dataclasses.replace(
        s,
        title=c.title,
        html=c.html,
        input=c.input,
        reloadable=c.reloadable,
        active=c.active,
        comments=c.comments,
    )


def _patched(s: ServerComponent, body: dict[str, Any] | Any) -> ServerComponent:
    names = {
        "title": "title",
        "htmlFilePath": "html",
        "componentInput": "input",
        "reloadable": "reloadable",
        "active": "active",
        "comments": "comments",
    }
    return dataclasses.replace(s, **{names[k]: v for k, v in body.items()})


PAGES = ["a.html", "b.html", "c.html", "d.html", "e.html"]


@settings(max_examples=200, deadline=None)
@given(
    on_server=st.lists(st.sampled_from(PAGES), unique=True, max_size=5),
    wanted=st.lists(st.sampled_from(PAGES), unique=True, max_size=5),
    inactive=st.sets(st.sampled_from(PAGES)),
    api=st.sampled_from([API_VERSION_382, V39, API_VERSION_310]),
    delete=st.booleans(),
)
def test_carrying_a_plan_out_leaves_nothing_to_do(
    on_server: list[str], wanted: list[str], inactive: set[str], api: str, delete: bool
) -> None:
    study = server_study(
        *(server_component(n, h, active=h not in inactive) for n, h in enumerate(on_server, 1))
    )
    definition = declared(*wanted, title="Changed" if len(wanted) % 2 else "Stroop")
    plan = plan_definition(
        definition, study, api_version=api, delete_components=delete, allow_delete=True
    )
    after = _apply(study, definition, plan)
    again = plan_definition(
        definition, after, api_version=api, delete_components=delete, allow_delete=True
    )
    assert not again.writes, again
    active = [c.html for c in after.components if c.active]
    assert [h for h in active if h in wanted] == wanted  # the declared ones, in order


# ------------------------------------------------------------------------------ the .jas


def test_the_jas_has_version_first_inputs_as_text_and_no_ids_lock_or_batches() -> None:
    wanted = Definition(
        title="Stroop",
        input='{"lang":"en"}',
        comments="",
        components=(ComponentDef("A", "a.html", input='{"x":1}', active=False),),
    )
    document = jas_document(
        wanted, study_uuid=STUDY_UUID, dir_name="stroop", component_uuids=["c-uuid"]
    )
    assert list(document) == ["version", "data"] and document["version"] == "3"
    data = document["data"]
    assert data["uuid"] == STUDY_UUID and data["dirName"] == "stroop"
    assert data["jsonData"] == '{"lang":"en"}' and data["comments"] is None
    assert not {"id", "locked", "active", "batchList", "studyInput"} & set(data)
    assert data["componentList"] == [
        {
            "uuid": "c-uuid",
            "title": "A",
            "htmlFilePath": "a.html",
            "reloadable": False,
            "active": False,
            "comments": None,
            "jsonData": '{"x":1}',
        }
    ]


# ------------------------------------------------------------------------------ reporting


def test_changes_are_listed_in_the_documented_shapes_and_in_words() -> None:
    assert Change("changed", "title", "A", "B").to_json() == {
        "field": "title",
        "from": "A",
        "to": "B",
    }
    assert Change("created", component="Consent").to_json() == {
        "component": "Consent",
        "change": "created",
    }
    assert Change("updated", "title", "A", "B", component="C").to_json() == {
        "component": "C",
        "change": "updated",
        "field": "title",
        "from": "A",
        "to": "B",
    }
    assert Change("deleted", component="C", results=3).to_json() == {
        "component": "C",
        "change": "deleted",
        "results": 3,
    }
    assert describe(Change("changed", "input", None, {"a": 1}), dry_run=True) == (
        "would change input: (none) → '{\"a\": 1}'"
    )
    assert describe(Change("deleted", component="C", results=1), dry_run=False) == (
        "component 'C' deleted, with its 1 result"
    )
    assert json.dumps(Change("moved", None, 2, 1, "X").to_json()) == (
        '{"component": "X", "change": "moved", "from": 2, "to": 1}'
    )


def test_problems_name_each_refused_value_by_its_key_and_in_words() -> None:
    definition = Definition(
        title="<b>Stroop</b>",
        entry_message="x" * 70_000,
        input="{not json",
        components=(
            ComponentDef("Intro", "intro.html"),
            ComponentDef("", "main.min.html", comments="<i>note</i>"),
        ),
    )
    found = {key: what for key, what, _problem in problems(definition)}
    assert found == {
        ("title",): "the study's title",
        ("entry_message",): "the study's entry message",
        ("input",): "the study's input",
        ("components", 1, "title"): "the title of component 2 ('')",
        ("components", 1, "html"): "the HTML file of component 2 ('')",
        ("components", 1, "comments"): "the comments of component 2 ('')",
    }
    assert (
        problems(
            dataclasses.replace(
                definition, title="Stroop", entry_message=None, input=None, components=()
            )
        )
        == []
    )
