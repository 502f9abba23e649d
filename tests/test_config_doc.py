"""Tests for jatos_sync.config_doc: the JSON Schema and the README table, both derived from the
declaration of the keys (config_spec.py), and the `jatos-sync config schema` command."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import jsonschema
import pytest
import yaml

from jatos_sync import config_doc, init
from jatos_sync.cli import main
from jatos_sync.config import SCHEMA_PATH, parse_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "jatos-sync.yaml"
MODELINE = "# yaml-language-server: $schema="


def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def problems(document: object) -> list[str]:
    """Every message, including those of the branches of an anyOf (null is allowed too)."""
    errors = list(validator().iter_errors(document))
    for error in errors:
        errors += error.context or []
    return [error.message for error in errors]


def test_the_shipped_schema_is_what_the_declaration_gives() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == config_doc.schema_text()


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = config_doc.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "jatos-sync.yaml"


def test_the_readme_table_is_what_the_declaration_gives() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert config_doc.with_table(readme) == readme, "run python -m jatos_sync.config_doc"
    assert "| `server.timeout` | `30s` | the time limit of each request" in readme
    assert "| `mappings[].study` | required |" in readme


def test_check_mode_reports_a_stale_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert config_doc.main(["--check"]) == 0
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{config_doc.BEGIN}\nold table\n{config_doc.END}\n", encoding="utf-8")
    monkeypatch.setattr(config_doc, "README", readme)
    assert config_doc.main(["--check"]) == 1
    assert "README.md is not what the declaration gives" in capsys.readouterr().out
    assert config_doc.main([]) == 0
    assert config_doc.readme_table() in readme.read_text(encoding="utf-8")
    assert config_doc.main(["--check"]) == 0


def test_every_key_of_the_declaration_is_in_the_schema_with_a_description() -> None:
    schema = config_doc.json_schema()
    sections = [schema, *schema["$defs"].values()]
    described = [p.get("description") for s in sections for p in s["properties"].values()]
    # top, server, watch, policy, mapping, definition, component, results
    assert len(described) == 5 + 9 + 5 + 5 + 12 + 10 + 7 + 3
    assert all(described)
    assert all(s["additionalProperties"] is False for s in sections)


def test_durations_are_a_number_in_range_or_a_pattern_string() -> None:
    timeout = config_doc.json_schema()["$defs"]["Server"]["properties"]["timeout"]
    assert timeout["default"] == 30.0
    number, text, null = timeout["anyOf"]
    assert number == {"type": "number", "minimum": 0.001, "maximum": 3600}
    assert text["type"] == "string"
    assert null == {"type": "null"}


def example_document() -> Any:
    return yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


def test_the_example_config_names_the_shipped_schema_and_validates() -> None:
    first = EXAMPLE.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(MODELINE)
    assert (EXAMPLE.parent / first.removeprefix(MODELINE)).resolve() == SCHEMA_PATH.resolve()
    assert problems(example_document()) == []


@pytest.mark.parametrize("token_file", [None, Path("/secrets/token")])
def test_the_config_init_writes_names_the_installed_schema_and_validates(
    token_file: Path | None,
) -> None:
    answers = init.Answers(
        url="https://jatos.example.org",
        folder=Path("/data/lab/exp"),
        study="5b1cf0a6-2c33-4a8e-9a43-4e0e5c3d8f21",
        name="exp",
        token_file=token_file,
    )
    text = init.render_config(answers, config_path=Path("/data/lab/jatos-sync.yaml"))
    first = text.splitlines()[0]
    assert first.startswith(MODELINE)
    uri = urlsplit(first.removeprefix(MODELINE))
    assert uri.scheme == "file"
    assert Path(url2pathname(uri.path)) == SCHEMA_PATH
    assert SCHEMA_PATH.is_file()
    assert problems(yaml.safe_load(text)) == []


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d: d["server"].update(tokenfile="t"), "Additional properties"),
        (lambda d: d.update(colour="blue"), "Additional properties"),
        (lambda d: d["mappings"][0].update(ignor=["x"]), "Additional properties"),
        (lambda d: d["server"].update(retries="4"), "is not of type 'integer'"),
        (lambda d: d["mappings"][0].update(delete="true"), "is not of type 'boolean'"),
        (lambda d: d["server"].update(concurrency=33), "33 is greater than the maximum of 32"),
        (lambda d: d["server"].update(timeout=7200), "7200 is greater than the maximum"),
        (lambda d: d["server"].update(timeout="5 minutes"), "is not valid under any"),
        (lambda d: d["mappings"][0].update(max_delete_percent=101), "is not valid under any"),
        (lambda d: d["mappings"][0].update(study=0), "is not valid under any"),
        (lambda d: d["mappings"][0].update(study="stroop"), "is not valid under any"),
        (lambda d: d.update(watch={"polling": "sometimes"}), "is not valid under any"),
        (lambda d: d["server"].pop("url"), "'url' is a required property"),
        (lambda d: d["mappings"].clear(), "should be non-empty"),
    ],
)
def test_the_schema_rejects_what_the_reader_rejects(change: Any, fragment: str) -> None:
    document = example_document()
    assert problems(document) == []
    change(document)
    found = problems(document)
    assert any(fragment in message for message in found), found
    with pytest.raises(Exception, match=r"expected|unknown key|required|empty list"):
        parse_config(yaml.safe_dump(document), path=EXAMPLE)


def test_config_schema_prints_the_schema() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(["config", "schema"], stdout=out, stderr=err) == 0
    assert json.loads(out.getvalue()) == config_doc.json_schema()
    assert err.getvalue() == ""


def test_config_alone_prints_its_help() -> None:
    out = io.StringIO()
    assert main(["config"], stdout=out, stderr=io.StringIO()) == 0
    assert "usage: jatos-sync config" in out.getvalue()
    assert "schema" in out.getvalue()


def test_msgspec_is_imported_only_when_a_configuration_is_read() -> None:
    code = (
        "import sys, jatos_sync.cli, jatos_sync.config\n"
        "print('msgspec' in sys.modules)\n"
        "jatos_sync.config.parse_config('server: {url: http://h}\\nmappings: [{folder: a, "
        "study: 1}]\\n', path=jatos_sync.config.Path('c.yaml'))\n"
        "print('msgspec' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.split() == ["False", "True"]
