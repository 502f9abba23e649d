"""Documents derived from the declaration of the keys (config_spec.py): the JSON Schema of
`jatos-sync.yaml`, shipped in the package for editors, and the README's table of keys.

`python -m jatos_sync.config_doc` rewrites both; `--check` only says whether they are
current (the tests check it too). It must not read or validate a configuration:
config_reader.py does that.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_origin

import msgspec

from jatos_sync import config_spec as spec
from jatos_sync.config import SCHEMA_PATH
from jatos_sync.config_reader import expected

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN = "<!-- config-keys: generated from jatos_sync/config_spec.py by python -m jatos_sync.config_doc -->"  # noqa: E501
END = "<!-- /config-keys -->"


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the configuration file."""
    definitions = msgspec.json.schema(spec.File)["$defs"]
    root = definitions.pop("File")
    for name, definition in [("File", root), *definitions.items()]:
        definition.pop("title", None)
        declared = spec.fields(getattr(spec, name))
        for key, prop in definition["properties"].items():
            form = spec.info(declared[key].type).get("form")
            if form and prop.get("type") == "number":  # a number, or text of its form
                words = {k: prop.pop(k) for k in ("description", "default") if k in prop}
                text = {"type": "string", "pattern": spec.FORMS[form][0]}
                prop = {**words, "anyOf": [prop, text]}
            if key not in definition["required"]:  # `key:` (empty) takes the default
                prop = _nullable(prop)
            definition["properties"][key] = prop
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "jatos-sync.yaml"}
    return json.loads(msgspec.json.encode({**schema, **root, "$defs": definitions}))  # type: ignore[no-any-return]


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def _nullable(prop: dict[str, Any]) -> dict[str, Any]:
    words: dict[str, Any] = {k: prop.pop(k) for k in ("description", "default") if k in prop}
    options = prop.pop("anyOf", None) or [prop]
    if {"type": "null"} not in options:
        options.append({"type": "null"})
    return {**words, "anyOf": options}


def readme_table() -> str:
    """The README's table of keys: key path, default, meaning."""
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for key, field in _keys(spec.File, ""):
        meaning = str(spec.info(field.type).get("description", ""))
        options, form = spec.parts(field.type)[0], spec.info(field.type).get("form")
        if form == "duration":  # how to write one is said once, above the table
            low, high = spec.limits(field.type)
            meaning += f"; from {spec.duration_text(low)} to {spec.duration_text(high)}"
        elif options == [int] or form == "percent" or get_origin(options[0]) is Literal:
            meaning += f"; {expected(field.type)}"
        meaning = meaning.replace("|", "\\|")
        rows.append(f"| `{key}` | {_default(field)} | {meaning} |")
    return "\n".join(rows) + "\n"


def _keys(struct: Any, prefix: str) -> list[tuple[str, msgspec.structs.FieldInfo]]:
    """Every key below `struct` with its declaration, each section before its keys."""
    found = []
    sections = {name: _section(field.type) for name, field in spec.fields(struct).items()}
    for name, field in spec.fields(struct).items():
        found.append((prefix + name, field))
        inner, below = sections[name]
        # `defaults:` takes the policy keys of a mapping (Mapping extends Policy): listed there.
        if inner is not None and not any(
            other is not inner and issubclass(other, inner)
            for other, _ in sections.values()
            if other
        ):
            found += _keys(inner, prefix + name + below)
    return found


def _section(declared: Any) -> tuple[Any, str]:
    """The declared class of a section (`Server`; `Mapping` for a list of them), or None."""
    if spec.struct(declared) is not None:
        return spec.struct(declared), "."
    item = spec.step(declared, 0)
    return (spec.struct(item), "[].") if spec.struct(item) is not None else (None, "")


def _default(field: msgspec.structs.FieldInfo) -> str:
    if field.required:
        return "required"
    value = field.default
    if value is None or isinstance(value, msgspec.Struct):
        return "" if value is not None else "none"
    if spec.info(field.type).get("form") == "duration":
        return f"`{spec.duration_text(value)}`"
    return f"`{json.dumps(list(value) if isinstance(value, tuple) else value)}`".replace('"', "")


def with_table(readme: str) -> str:
    """`readme` with the generated table between its markers."""
    head, begin, rest = readme.partition(BEGIN)
    _old, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"README.md lacks the markers {BEGIN} … {END}")
    return f"{head}{BEGIN}\n{readme_table()}{END}{tail}"


def main(argv: Sequence[str] = ()) -> int:
    """Rewrite the shipped schema and the README's table; with --check, only compare."""
    wanted = {SCHEMA_PATH: schema_text(), README: with_table(README.read_text(encoding="utf-8"))}
    stale = [
        path
        for path, text in wanted.items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
    if "--check" in argv:
        for path in stale:
            print(f"{path} is not what the declaration gives; run python -m jatos_sync.config_doc")
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path], encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
