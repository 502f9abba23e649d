"""The `create:`, `definition:` and `delete_components:` keys of a mapping: what they become,
and every local check with the configuration's usual file:line:key message (exit 2)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from jatos_sync.config import parse_config
from jatos_sync.definition import ComponentDef, Definition
from jatos_sync.errors import ConfigError

STUDY_UUID = "3c8d5a2e-6f0b-4f5e-9a51-0d2f4c7b9e11"


@pytest.fixture
def base(tmp_path: Path) -> Path:
    folder = tmp_path / "stroop"
    (folder / "pages").mkdir(parents=True)
    (folder / "index.html").write_text("<p>task</p>")
    (folder / "consent.html").write_text("<p>consent</p>")
    (folder / "pages" / "debrief.html").write_text("<p>thanks</p>")
    (folder / "empty.html").write_text("")
    (folder / "draft.html").write_text("<p>draft</p>")
    (folder / ".jatosignore").write_text("draft.html\n")
    return tmp_path


def config(base: Path, mapping_yaml: str) -> str:
    return (
        "server:\n  url: https://jatos.example.org\n"
        "mappings:\n  - name: stroop\n    folder: stroop\n"
        + textwrap.indent(textwrap.dedent(mapping_yaml), "    ")
    )


def read(base: Path, mapping_yaml: str) -> Definition | None:
    return (
        parse_config(config(base, mapping_yaml), path=base / "jatos-sync.yaml")
        .mappings[0]
        .definition
    )


def error(base: Path, mapping_yaml: str) -> str:
    with pytest.raises(ConfigError) as raised:
        read(base, mapping_yaml)
    return str(raised.value)


def test_the_keys_of_the_issue_work_as_shown(base: Path) -> None:
    mapping = parse_config(
        config(
            base,
            f"""\
            study: {STUDY_UUID}
            create: true
            definition:
              title: Stroop task
              description: Colour-word interference, 120 trials
              comments: pilot version
              input: {{lang: en, trials: 120}}
              end_redirect_url: https://example.org/done
              linear: false
              allow_preview: true
              components:
                - title: Consent
                  html: consent.html
                - title: Experiment
                  html: index.html
                  input: {{block: 1}}
                  reloadable: false
                  active: true
            """,
        ),
        path=base / "jatos-sync.yaml",
    ).mappings[0]
    assert mapping.create and not mapping.delete_components
    assert mapping.definition == Definition(
        title="Stroop task",
        description="Colour-word interference, 120 trials",
        comments="pilot version",
        input='{"lang":"en","trials":120}',
        end_redirect_url="https://example.org/done",
        allow_preview=True,
        components=(
            ComponentDef("Consent", "consent.html"),
            ComponentDef("Experiment", "index.html", input='{"block":1}'),
        ),
    )


def test_without_the_keys_nothing_changes(base: Path) -> None:
    mapping = parse_config(config(base, "study: 42\n"), path=base / "j.yaml").mappings[0]
    assert (mapping.create, mapping.definition, mapping.delete_components) == (False, None, False)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("[1, 2.5, null, true, 'x']", '[1,2.5,null,true,"x"]'),
        ("hello", '"hello"'),
        ("'2024-01-01'", '"2024-01-01"'),
        ("{nested: {deep: [ {a: 1} ]}}", '{"nested":{"deep":[{"a":1}]}}'),
        ("~", None),
        ("12345678901234567890", "12345678901234567890"),
    ],
)
def test_an_input_is_any_value_json_can_hold(base: Path, value: str, text: str | None) -> None:
    found = read(base, f"study: {STUDY_UUID}\ndefinition:\n  title: Stroop\n  input: {value}\n")
    assert found is not None and found.input == text


@pytest.mark.parametrize(
    ("value", "what"),
    [("2024-01-01", "the date"), (".inf", ".inf"), ("!!binary aGk=", "tagged !!binary")],
)
def test_what_json_cannot_hold_is_refused_on_its_line(base: Path, value: str, what: str) -> None:
    message = error(
        base, f"study: {STUDY_UUID}\ndefinition:\n  title: Stroop\n  input:\n    at: {value}\n"
    )
    assert "jatos-sync.yaml:10: mappings[0].definition.input.at:" in message
    assert what in message and "JSON has no such value" in message


@pytest.mark.parametrize(
    ("component", "line", "key", "words"),
    [
        ("title: Gone\n    html: gone.html", 11, "html", "'gone.html' is not a file in the folder"),
        ("title: Min\n    html: main.min.html", 11, "html", "exactly one dot"),
        ("title: Up\n    html: ../outside.html", 11, "html", "relative to the folder"),
        ("title: Empty\n    html: empty.html", 11, "html", "JATOS refuses empty files"),
        ("title: Draft\n    html: draft.html", 11, "html", "is ignored"),
        ("title: '<i>x</i>'\n    html: index.html", 10, "title", "no HTML"),
        ("html: index.html", 10, "title", "required key is missing"),
        ("title: X\n    html: index.html\n    uuid: nope", 12, "uuid", "expected a UUID"),
        ("title: X\n    html: index.html\n    colour: red", 12, "colour", "unknown key"),
    ],
)
def test_a_bad_component_is_a_config_error_naming_file_line_and_key(
    base: Path, component: str, line: int, key: str, words: str
) -> None:
    message = error(
        base,
        f"study: {STUDY_UUID}\ndefinition:\n  title: Stroop\n  components:\n  - {component}\n",
    )
    assert f"jatos-sync.yaml:{line}: mappings[0].definition.components[0].{key}:" in message
    assert words in message


def test_a_component_in_a_subfolder_is_fine(base: Path) -> None:
    found = read(
        base,
        f"study: {STUDY_UUID}\ndefinition:\n  title: Stroop\n  components:\n"
        "  - {title: Debrief, html: pages/debrief.html}\n",
    )
    assert found is not None and found.components[0].html == "pages/debrief.html"


def test_two_components_cannot_share_a_uuid(base: Path) -> None:
    uuid = "a1f0c3e2-1b2c-4d5e-8f90-123456789abc"
    message = error(
        base,
        f"study: {STUDY_UUID}\ndefinition:\n  title: Stroop\n  components:\n"
        f"  - {{title: A, html: index.html, uuid: {uuid}}}\n"
        f"  - {{title: B, html: consent.html, uuid: {uuid.upper()}}}\n",
    )
    assert "components[1].uuid: components[0] has this uuid too" in message


@pytest.mark.parametrize(
    ("study_yaml", "key", "words"),
    [
        ("title: ab", "title", "at least 3 characters"),
        ("title: '<b>Stroop</b>'", "title", "no HTML"),
        ("title: Stroop\n  description: 'see <a href=x>here</a>'", "description", "no HTML"),
        ("title: Stroop\n  entry_message: " + "x" * 1001, "entry_message", "at most 1000 bytes"),
        ("title: " + "x" * 256, "title", "1 to 255 characters"),
        ("description: no title", "title", "required key is missing"),
        ("title: Stroop\n  linear: maybe", "linear", "true or false"),
    ],
)
def test_a_bad_study_property_is_a_config_error(
    base: Path, study_yaml: str, key: str, words: str
) -> None:
    message = error(base, f"study: {STUDY_UUID}\ndefinition:\n  {study_yaml}\n")
    assert f"mappings[0].definition.{key}:" in message and words in message


def test_create_needs_a_uuid(base: Path) -> None:
    message = error(base, "study: 42\ncreate: true\n")
    assert "jatos-sync.yaml:7: mappings[0].create: create: true needs `study:` to be a UUID" in (
        message
    )


def test_the_html_files_are_checked_only_when_the_folder_exists(base: Path) -> None:
    # A missing folder is the pass's to report (a safety stop), not the reader's.
    text = config(
        base,
        f"study: {STUDY_UUID}\ndefinition:\n  title: Stroop\n  components:\n"
        "  - {title: A, html: index.html}\n",
    ).replace("folder: stroop", "folder: elsewhere")
    mapping = parse_config(text, path=base / "jatos-sync.yaml").mappings[0]
    assert mapping.definition is not None


def test_delete_components_is_a_mapping_key_and_not_a_default(base: Path) -> None:
    mapping = parse_config(
        config(base, f"study: {STUDY_UUID}\ndelete_components: true\n"), path=base / "j.yaml"
    ).mappings[0]
    assert mapping.delete_components
    text = (
        "server:\n  url: https://jatos.example.org\ndefaults:\n  delete_components: true\n"
        f"mappings:\n  - folder: stroop\n    study: {STUDY_UUID}\n"
    )
    with pytest.raises(ConfigError, match=r"defaults\.delete_components: unknown key"):
        parse_config(text, path=base / "j.yaml")
