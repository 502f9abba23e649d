"""Reading `jatos-sync.yaml`: YAML nodes → plain data → the declaration → `Config`.

`yaml.compose()` (safe loader) gives nodes with line marks; this module walks them itself
(never `yaml.load`: no object is built from a tag), honours merge keys, and descends only
where the declaration (config_spec.py) expects a mapping or a list, so aliases cannot
inflate what it builds. On the way it turns text of a key's declared form into its value
(`30s` → 30.0, a path → an absolute path) and keeps the nodes of every key path: when
`msgspec.convert` rejects the data, its path (`$.mappings[0].study`) leads back to the line,
and the declared type there says what was expected. Last come the checks that span keys
(URL, inline token, `defaults:` under each mapping, clashes). It must not talk to the
server, create anything, or put a token into a message.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import msgspec
import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError

from jatos_sync import config_spec as spec
from jatos_sync.config import (
    Config,
    MappingConfig,
    ResultsConfig,
    ServerConfig,
    WatchConfig,
    _quote,
    results_folder_problem,
    web_address,
)
from jatos_sync.credentials import TOKEN_PREFIX, Token, check_token_format, keep_out
from jatos_sync.errors import ConfigError, UnsafePathError
from jatos_sync.ignore import IgnoreRules, pattern_problem
from jatos_sync.paths import is_inside, server_path
from jatos_sync.yaml_errors import in_words

KeyPath = tuple[str | int, ...]
_T = TypeVar("_T")
_TAG = "tag:yaml.org,2002:"
_STR, _NULL, _BOOL, _MERGE = (_TAG + t for t in ("str", "null", "bool", "merge"))
# Reading a file may visit at most this many nodes. Aliases share nodes, so a small file can
# stand for an enormous tree (a "billion laughs" document); the budget stops the walk early.
NODE_BUDGET = 100_000


def read(text: str, *, path: Path, mode: int) -> Config:
    """The checked configuration in `text`, read as if from `path` with permission bits `mode`."""
    absolute = Path(os.path.abspath(path))
    reader = _Reader(str(path), absolute.parent, mode)
    root = reader.compose(text)
    if root is None or _is_null(root):
        raise reader.error(
            "the file is empty; expected server: and mappings:, or write a new one with "
            "`jatos-sync init`"
        )
    reader.nodes[()] = (root, root, spec.File)
    try:
        data = reader.build(root, (), spec.File)
    except RecursionError:  # only merge keys nest deeper than the declaration: `<<: *a` …
        raise reader.error("merge keys (<<) are chained too deeply") from None
    return reader.resolve(reader.check(data), absolute)


class _Reader:
    """One document: its name, directory, permission bits, and the nodes of its key paths."""

    def __init__(self, shown: str, base_dir: Path, mode: int) -> None:
        self.shown, self.base_dir, self.mode = shown, base_dir, mode
        # key path → (key node, value node, declared type), for messages about that key
        self.nodes: dict[KeyPath, tuple[Node, Node, Any]] = {}
        self.visits = 0

    def error(self, message: str, at: Node | int | None = None, path: KeyPath = ()) -> ConfigError:
        """`file:line: key.path: message`, where `at` is the node or the line."""
        line = _line(at) if isinstance(at, Node) else at
        head = f"{self.shown}:{line}" if line else self.shown
        return ConfigError(": ".join([head, *filter(None, [_label(path)]), message]))

    def at(self, path: KeyPath, message: str) -> ConfigError:
        """An error about the value at `path`, on its line."""
        return self.error(message, self.nodes[path][1], path)

    def visit(self, node: Node) -> None:
        self.visits += 1
        if self.visits > NODE_BUDGET:
            raise self.error(
                f"too many nested aliases: reading this file means visiting more than "
                f"{NODE_BUDGET} values; use fewer anchors (&) and aliases (*)",
                node,
            )

    def compose(self, text: str) -> Node | None:
        try:
            return yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            # Built from the parts, never str(exc): the snippet it quotes could hold a token.
            mark = exc.problem_mark or exc.context_mark
            where = f"{self.shown}:{mark.line + 1}:{mark.column + 1}" if mark else self.shown
            raise ConfigError(f"{where}: YAML syntax error: {in_words(exc, text)}") from None
        except ReaderError as exc:
            char = exc.character
            code = char if isinstance(char, int) else ord(str(char)[:1] or " ")
            raise self.error(
                f"YAML cannot contain the character U+{code:04X} (a control character or an "
                "unpaired surrogate); remove it",
                text.count("\n", 0, exc.position) + 1,
            ) from None
        except yaml.YAMLError as exc:
            raise self.error(f"not valid YAML: {type(exc).__name__}") from None
        except RecursionError:
            raise self.error("the YAML is nested too deeply") from None

    def build(self, node: Node, path: KeyPath, declared: Any) -> object:
        """Plain data for `node`, descending only where `declared` expects a mapping or a list
        (or JSON data: an input), recording the nodes of each key path on the way.

        msgspec then checks the data (`check`): unknown and missing keys, types, limits.
        """
        self.visit(node)
        json = spec.info(declared).get("form") == "json"  # any value JSON can hold
        struct = None if json else spec.struct(declared)
        if isinstance(node, MappingNode) and (json or struct is not None):
            known = {} if struct is None else spec.fields(struct)
            data: dict[str, object] = {}
            for name, (key, value) in self.flatten(node, path, set()).items():
                inner = declared if json else (known[name].type if name in known else None)
                self.nodes[where := (*path, name)] = (key, value, inner)
                if json or not _is_null(value):  # `key:` takes the default
                    data[name] = self.build(value, where, inner)
            return data
        if isinstance(node, SequenceNode) and (json or spec.step(declared, 0) is not None):
            item = declared if json else spec.step(declared, 0)
            items = []
            for i, child in enumerate(node.value):
                self.nodes[where := (*path, i)] = (child, child, item)
                items.append(self.build(child, where, item))
            return items
        if not isinstance(node, ScalarNode):
            return node  # where no mapping or list is declared: msgspec says what is wrong
        if node.tag == _STR:
            form = spec.info(declared).get("form", "")
            if form == "path" and node.value.strip():
                return self.path(path, node.value)
            if form in spec.FORMS and re.fullmatch(spec.FORMS[form][0], node.value):
                return spec.FORMS[form][1](node.value)  # "30s" → 30.0, then checked
            return str(node.value)
        try:  # null, bool, int, float; a date, !!binary or a custom tag fits no key
            value = SafeConstructor().construct_object(node)
        except ConstructorError:
            value = node
        except (ValueError, ArithmeticError, LookupError, TypeError):  # `!!int abc`, 9999…
            kind = "true or false" if node.tag == _BOOL else "a number (too large or malformed)"
            raise self.at(path, f"cannot read {_quote(str(node.value))} as {kind}") from None
        if json and not (
            value is None
            or isinstance(value, (bool, int))
            or (isinstance(value, float) and math.isfinite(value))
        ):
            raise self.error(
                f"{_describe(node)} cannot be part of an input: JSON has no such value; put it "
                "in quotes to make it text",
                node,
                path,
            )
        return value

    def flatten(self, node: MappingNode, path: KeyPath, active: set[int]) -> dict[str, Any]:
        """Key name → (key node, value node), resolving merge keys (`<<: *anchor`)."""
        if id(node) in active:
            raise self.error("a merge key (<<) refers to a mapping that contains it", node, path)
        active.add(id(node))
        merged: dict[str, tuple[Node, Node]] = {}
        explicit: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            self.visit(key)  # values are visited where they are built
            if key.tag == _MERGE:
                for source in value.value if isinstance(value, SequenceNode) else [value]:
                    self.visit(source)
                    if not isinstance(source, MappingNode):
                        takes = "a merge key (<<) takes a mapping or a list of mappings"
                        raise self.error(f"{takes}, got {_describe(source)}", source, path)
                    for name, entry in self.flatten(source, path, active).items():
                        merged.setdefault(name, entry)  # earlier sources win (YAML merge spec)
            elif not isinstance(key, ScalarNode):
                raise self.error(f"keys must be plain names, got {_describe(key)}", key, path)
            elif (name := str(key.value)) in explicit:
                first = _line(explicit[name][0])
                raise self.error(f"duplicate key (first given on line {first})", key, (*path, name))
            else:
                explicit[name] = (key, value)
        active.discard(id(node))
        return {**merged, **explicit}

    def check(self, data: object) -> spec.File:
        """`data` as the declaration says, or msgspec's first objection in our words."""
        try:
            return msgspec.convert(data, spec.File)
        except msgspec.ValidationError as exc:
            problem, at, where = str(exc).rpartition(" - at `")
            path = tuple(n or int(i) for n, i in re.findall(r"\.(\w+)|\[(\d+)\]", where))
            path, problem = (path, problem) if at else ((), str(exc))
            field = re.search(r"(unknown|missing required) field `(.*)`$", problem)
            if field is None:
                raise self.explain(path, problem) from None
            name, known = field[2], spec.fields(spec.struct(self.nodes[path][2]))
            key = (*path, name)
            if field[1] == "unknown":
                raise self.error(_unknown(name, list(known)), self.nodes[key][0], key) from None
            if key in self.nodes:  # given, but empty
                raise self.explain(key, "") from None
            missing = f"required key is missing; expected {expected(known[name].type)}"
            raise self.error(missing, self.nodes[path][0], key) from None

    def explain(self, path: KeyPath, problem: str) -> ConfigError:
        """msgspec's `problem` with the value at `path`, in the words of the declaration."""
        _key, node, declared = self.nodes[path]
        secret = bool(spec.info(declared).get("secret"))
        got = "an empty list" if "length >=" in problem else _describe(node, secret=secret)
        quoted = node.tag == _STR and node.value.strip().lower() in ("true", "false", "yes", "no")
        hint = " (remove the quotes)" if quoted and bool in spec.parts(declared)[0] else ""
        return self.at(path, f"expected {expected(declared)}, got {got}{hint}")

    def resolve(self, file: spec.File, absolute: Path) -> Config:
        """The public values, after the checks that span keys or need the file itself."""
        server = file.server
        if TOKEN_PREFIX in server.token_env:
            raise self.at(
                ("server", "token_env"),
                "this looks like the token itself; token_env takes the *name* of the "
                "environment variable that holds it (e.g. JATOS_TOKEN)",
            )
        if server.ca_bundle is not None and not os.path.exists(server.ca_bundle):
            raise self.at(("server", "ca_bundle"), f"{server.ca_bundle} does not exist")
        token = None if server.token is None else self.inline_token(server.token)
        public = _public(ServerConfig, server, url=self.url(server.url), inline_token=token)
        mappings: list[MappingConfig] = []
        for i, entry in enumerate(file.mappings):
            mappings.append(self.mapping(("mappings", i), entry, file.defaults, mappings))
        # The file and the token file must never be synced, wherever they lie.
        secrets = [absolute, *([public.token_file] if public.token_file else [])]
        kept_out = tuple(
            self.with_definition(("mappings", i), entry, keep_out(mapping, secrets))
            for i, (entry, mapping) in enumerate(zip(file.mappings, mappings, strict=True))
        )
        self.check_results(kept_out, file.state_dir)
        watch = _public(WatchConfig, file.watch)
        return _public(Config, file, path=absolute, server=public, mappings=kept_out, watch=watch)

    def url(self, raw: str) -> str:
        """The base URL of JATOS: the scheme in lower case, no "/" at the end."""
        at = ("server", "url")
        # A URL with "@" may carry a password: never echo it.
        got = "a URL with '@' (not shown)" if "@" in raw else _describe(self.nodes[at][1])
        bad = f"expected the base URL of JATOS, e.g. https://jatos.example.org, got {got}"
        try:
            base, prefix = web_address(raw)
        except ValueError as exc:
            raise self.at(at, f"{bad} ({exc})") from None
        if "?" in raw or "#" in raw:
            raise self.at(at, "the URL must not contain a ?query or #fragment; give the base URL")
        if (cut := prefix.lower().find("/jatos/api")) >= 0:
            fixed = _quote(base + prefix[:cut])
            raise self.at(at, f"give the base URL of JATOS, without /jatos/api…: {fixed}")
        return base + prefix

    def inline_token(self, value: str) -> Token:
        if self.mode & 0o077:
            raise self.at(
                ("server", "token"),
                "an inline token is accepted only from a file that group and others cannot "
                f"read, and this file has mode {self.mode & 0o777:04o}; run `chmod 600 "
                f"{self.shown}`, or move the token to a file named by token_file (or to "
                "$JATOS_TOKEN)",
            )
        line = _line(self.nodes[("server", "token")][1])
        return check_token_format(value, source=f"{self.shown}:{line}: server.token")

    def mapping(
        self, at: KeyPath, entry: spec.Mapping, defaults: spec.Policy, done: list[MappingConfig]
    ) -> MappingConfig:
        """One entry of `mappings:` over `defaults:`, with a name and a study of its own."""
        name = Path(entry.folder).name if entry.name is None else entry.name
        named, how = (
            ((*at, "name"), "the name")
            if entry.name is not None
            else (at, "the name taken from its folder,")
        )
        if problem := _name_problem(name):
            add = "; add name:" if entry.name is None else ""
            raise self.at(named, f"{how} {_quote(name)} cannot be used ({problem}){add}")
        policy = {}
        for key in spec.fields(spec.Policy):  # the mapping's own value, else that of defaults:
            own_key = (*at, key)
            own = own_key in self.nodes and not _is_null(self.nodes[own_key][1])
            policy[key] = getattr(entry if own else defaults, key)
        # The defaults' patterns first, so that a mapping's own "!pattern" can re-include.
        policy["ignore"] = self.patterns(("defaults", "ignore"), defaults.ignore) + self.patterns(
            (*at, "ignore"), entry.ignore
        )
        line = _line(self.nodes[at][1])
        results = self.results(at, entry.results)
        result = _public(
            MappingConfig,
            entry,
            name=name,
            study=str(entry.study),
            line=line,
            definition=None,  # with_definition, once the ignore rules are complete
            results=results,
            **policy,
        )
        if result.create and result.study.isdigit():
            raise self.at(
                (*at, "create"),
                "create: true needs `study:` to be a UUID (a new study can be given its UUID, "
                "never its ID); `jatos-sync init --create` writes a new one",
            )
        for index, other in enumerate(done):
            where = f"mappings[{index}] (line {other.line})"
            if other.name == name:
                used = f"{how} {_quote(name)} is already used by {where}"
                raise self.at(named, f"{used}; give each mapping its own name:")
            if other.study == result.study:
                synced = f"study {result.study} is already synced by {where}"
                raise self.at((*at, "study"), f"{synced}; two folders cannot share one study")
        return result

    def with_definition(
        self, at: KeyPath, entry: spec.Mapping, mapping: MappingConfig
    ) -> MappingConfig:
        """`mapping` with its `definition:`, checked as JATOS would check it
        (docs/jatos-api.md §11.6), and each component's HTML file checked in the folder: there,
        syncable and not ignored (a folder that is missing is the pass's to report)."""
        declared = entry.definition
        if declared is None:
            return mapping
        from jatos_sync import definition as d  # only for a mapping with definition:

        here = (*at, "definition")
        rules = self.rules(mapping)
        components: list[d.ComponentDef] = []
        uuids: dict[str, int] = {}
        for i, component in enumerate(declared.components):
            where = (*here, "components", i)
            html = self.html_file(where, component.html, mapping, rules)
            if component.uuid is not None:
                key = component.uuid.lower()
                if key in uuids:
                    raise self.at(
                        (*where, "uuid"),
                        f"components[{uuids[key]}] has this uuid too; each component needs its own",
                    )
                uuids[key] = i
            uuid, data = component.uuid and component.uuid.lower(), d.json_text(component.input)
            components.append(_public(d.ComponentDef, component, html=html, uuid=uuid, input=data))
        definition = _public(
            d.Definition, declared, input=d.json_text(declared.input), components=tuple(components)
        )
        for below, _what, problem in d.problems(definition):
            raise self.at((*here, *below), problem)
        return dataclasses.replace(mapping, definition=definition)

    def rules(self, mapping: MappingConfig) -> IgnoreRules | None:
        if not os.path.isdir(mapping.folder):
            return None  # the pass stops with the folder's problem (docs/safety.md, rule 1)
        try:
            return IgnoreRules.for_folder(mapping.folder, mapping.ignore)
        except ConfigError:
            return None  # a broken .jatosignore is reported by the pass, with its line

    def html_file(
        self, at: KeyPath, text: str, mapping: MappingConfig, rules: IgnoreRules | None
    ) -> str:
        """A component's HTML path, checked: a plain relative path JATOS accepts, and a
        file of the folder that would be synced."""
        from jatos_sync import definition as d

        where = (*at, "html")
        try:
            path = server_path(text)
        except UnsafePathError as exc:
            raise self.at(where, f"expected a path relative to the folder ({exc})") from None
        if problem := d.html_path_problem(str(path)):
            raise self.at(where, problem)
        if rules is None:
            return str(path)
        local = mapping.folder.joinpath(*path.parts)
        if not os.path.isfile(local):
            raise self.at(
                where,
                f"{_quote(str(path))} is not a file in the folder {mapping.folder}; a "
                "component needs its HTML file there (create it, or fix html:)",
            )
        if rules.is_ignored(path):
            raise self.at(
                where,
                f"{_quote(str(path))} is ignored (by the built-in rules, .jatosignore or "
                "ignore:), so it would never reach the server; remove the rule that ignores it",
            )
        if os.path.getsize(local) == 0:
            raise self.at(where, f"{_quote(str(path))} is empty, and JATOS refuses empty files")
        return str(path)

    def results(self, at: KeyPath, declared: spec.Results | None) -> ResultsConfig | None:
        """A mapping's `results:`, with the place of its folder key for later messages."""
        if declared is None:
            return None
        where = (*at, "results", "folder")
        line = _line(self.nodes[where][1])
        return _public(ResultsConfig, declared, where=f"{self.shown}:{line}: {_label(where)}")

    def check_results(self, mappings: tuple[MappingConfig, ...], state_dir: str | None) -> None:
        """Participant data never becomes a study asset (docs/safety.md, rule 9): each results
        folder lies outside every synced folder and the state folder, compared resolved
        (symlinks followed), and no two mappings write into one results folder."""
        for i, mapping in enumerate(mappings):
            if mapping.results is None:
                continue
            at, folder = ("mappings", i, "results", "folder"), mapping.results.folder
            synced = [(other.name, other.folder) for other in mappings]
            state = None if state_dir is None else Path(state_dir)
            if problem := results_folder_problem(folder, synced, state):
                raise self.at(at, problem)
            for j, other in enumerate(mappings[:i]):
                theirs = other.results.folder if other.results else None
                if theirs and (is_inside(folder, theirs) or is_inside(theirs, folder)):
                    raise self.at(
                        at,
                        f"the results folder {folder} overlaps {theirs}, the results folder "
                        f"of mappings[{j}] (line {other.line}); give each mapping a results "
                        "folder of its own",
                    )

    def patterns(self, at: KeyPath, value: str | tuple[str, ...]) -> tuple[str, ...]:
        found = (
            {at: value} if isinstance(value, str) else {(*at, i): p for i, p in enumerate(value)}
        )
        for where, pattern in found.items():
            if problem := pattern_problem(pattern):
                raise self.at(
                    where, f"{_quote(pattern)} is not a valid gitignore pattern: {problem}"
                )
        return tuple(found.values())

    def path(self, at: KeyPath, text: str) -> str:
        """`text` as an absolute, normalised path: `~` expanded, relative to the file's folder."""
        if "\x00" in text:
            raise self.at(at, "a path cannot contain a NUL character")
        try:
            return os.path.normpath(self.base_dir / Path(text).expanduser())
        except RuntimeError:
            why = "unknown user or no home directory"
            raise self.at(at, f"cannot expand ~ in {_quote(text)}: {why}") from None


def _public(cls: Callable[..., _T], declared: msgspec.Struct, **resolved: Any) -> _T:
    """`cls` made of the `resolved` values and, for its other fields, the declared key of the
    same name (only public names carry a unit: `timeout_s` is `timeout`), a path as a Path."""
    values = dict(resolved)
    for name in inspect.signature(cls).parameters.keys() - resolved.keys():
        key = name.removesuffix("_s")
        value, info = getattr(declared, key), spec.info(spec.fields(type(declared))[key].type)
        values[name] = Path(value) if info.get("form") == "path" and value is not None else value
    return cls(**values)


def expected(declared: Any) -> str:
    """What a key must hold, in words: from its type, form and limits, else its description."""
    options, info, struct = spec.parts(declared)[0], spec.info(declared), spec.struct(declared)
    (low, high), form = spec.limits(declared), info.get("form")
    if "expected" in info:
        return str(info["expected"])
    if form == "duration":
        return (
            f"a duration from {spec.duration_text(low)} to {spec.duration_text(high)}: a number "
            'of seconds such as 30, or text such as "500ms", "30s", "2m"'
        )
    if form == "percent":
        return f"a percentage from {low:g} to {high:g}"
    if options == [bool]:
        return "true or false"
    if options == [int]:
        return (
            f"a whole number {f'from {low} to {high}' if high is not None else f'of {low} or more'}"
        )
    if get_origin(options[0]) is Literal:
        return "one of " + ", ".join(get_args(options[0]))
    if struct is not None:
        required = [f"{n}:" for n, f in spec.fields(struct).items() if f.required]
        keys = " and ".join(required) or ", ".join(spec.fields(struct))
        return f"a mapping {'with' if required else 'of'} {keys}"
    return str(info.get("description", "text"))


def _unknown(name: str, known: list[str]) -> str:
    """Where a key that is unknown here belongs, or the key that was probably meant."""
    places = {n: ["at the top level of the file"] for n in spec.fields(spec.File)}
    for section, field in spec.fields(spec.File).items():
        inner = spec.struct(field.type) or spec.struct(spec.step(field.type, 0))
        for key in spec.fields(inner) if inner else ():  # mappings: first, then defaults:
            entry = "under" if spec.struct(field.type) else "in an entry of"
            places.setdefault(key, []).insert(0, f"{entry} {section}:")
    if name in places:
        return (
            f"unknown key here; {name} belongs "
            + " (or ".join(places[name])
            + ")" * (len(places[name]) - 1)
        )
    close = difflib.get_close_matches(name.lower().replace("-", "_"), known, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean '{close[0]}'?"
    return "unknown key; the keys allowed here are: " + ", ".join(known)


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1 if node.start_mark is not None else 1


def _is_null(node: Node | None) -> bool:
    return node is None or (isinstance(node, ScalarNode) and node.tag == _NULL)


def _label(path: KeyPath) -> str:
    """`mappings[0].study`; a key that is not a plain name is shown quoted, never a token."""
    label = ""
    for key in path:
        if isinstance(key, int):
            label += f"[{key}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", key) and TOKEN_PREFIX not in key:
            label += f".{key}"
        else:
            label += f"[{_quote(key)}]"
    return label.lstrip(".")


def _describe(node: Node, *, secret: bool = False) -> str:
    """What the file holds at `node`, for "expected X, got Y"."""
    if not isinstance(node, ScalarNode):
        return "a mapping" if isinstance(node, MappingNode) else "a list"
    tag, raw = node.tag, str(node.value)
    if tag == _NULL:
        return "nothing (an empty value)"
    if secret:
        return "text" if tag == _STR else "a value of the wrong type"
    if tag == _STR:
        return f"the text {_quote(raw)}" if raw else "an empty text"
    if tag == _BOOL and raw not in ("true", "false"):
        return f"{raw} (which YAML reads as {str(raw.lower() in ('yes', 'on')).lower()})"
    if tag in (_BOOL, _TAG + "int", _TAG + "float"):
        return raw if len(raw) <= 40 else raw[:37] + "…"
    if tag == _TAG + "timestamp":
        return f"the date {_quote(raw)}"
    return f"{_quote(raw)} tagged {tag.replace(_TAG, '!!')}"


def _name_problem(name: str) -> str | None:
    """Why `name` cannot name a mapping on the command line, or None."""
    problems = {
        "it is empty": not name,
        "it is longer than 100 characters": len(name) > 100,
        "it starts or ends with a space": name != name.strip(),
        "it contains a control character": not name.isprintable(),
        "it contains a slash": "/" in name or "\\" in name,
        "it starts with '-', which the command line reads as an option": name.startswith("-"),
    }
    return next((why for why, bad in problems.items() if bad), None)
