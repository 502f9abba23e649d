"""Reading `jatos-sync.yaml`: YAML nodes → plain data → the declaration → `Config`.

`yaml.compose()` (safe loader) gives nodes with line marks; this module walks them itself
(never `yaml.load`: no object is built from a tag), honours merge keys, and descends only
where the declaration (config_spec.py) expects a mapping or a list, so aliases cannot
inflate what it builds. On the way it turns text of a key's declared form into its value
(`30s` → 30.0) and keeps the nodes of every key path: when `msgspec.convert` rejects the
data, its path (`$.mappings[0].study`) leads back to the line, and the declared type at
that path says what was expected. Last, values are resolved (paths, URL, inline token,
`defaults:` merged into each mapping, clashes). It must not talk to the server, create
anything, or put a token into a message.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args, get_origin
from urllib.parse import urlsplit

import msgspec
import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError

from jatos_sync import config_spec as spec
from jatos_sync.config import Config, MappingConfig, ServerConfig, WatchConfig, _quote
from jatos_sync.credentials import TOKEN_PREFIX, Token, check_token_format, keep_out
from jatos_sync.errors import ConfigError
from jatos_sync.ignore import pattern_problem

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

KeyPath = tuple[str | int, ...]
_T = TypeVar("_T", bound="DataclassInstance")
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
            None,
            (),
            "the file is empty; expected server: and mappings:, or "
            "write a new one with `jatos-sync init`",
        )
    reader.nodes[()] = (root, root)
    try:
        data = reader.build(root, (), spec.File)
    except RecursionError:  # only merge keys nest deeper than the declaration: `<<: *a` …
        raise reader.error(None, (), "merge keys (<<) are chained too deeply") from None
    return reader.resolve(reader.check(data), absolute)


class _Reader:
    """One document: its name, directory, permission bits, and the nodes of its key paths."""

    def __init__(self, shown: str, base_dir: Path, mode: int) -> None:
        self.shown, self.base_dir, self.mode = shown, base_dir, mode
        self.nodes: dict[KeyPath, tuple[Node, Node]] = {}  # key path → (key node, value node)
        self.visits = 0

    def error(self, where: Node | int | None, path: KeyPath, message: str) -> ConfigError:
        line = _line(where) if isinstance(where, Node) else where
        head = f"{self.shown}:{line}" if line else self.shown
        return ConfigError(": ".join([head, *filter(None, [_label(path)]), message]))

    def at(self, path: KeyPath, message: str) -> ConfigError:
        """An error about the value at `path`, on its line."""
        return self.error(self.nodes[path][1], path, message)

    def visit(self, node: Node) -> None:
        self.visits += 1
        if self.visits > NODE_BUDGET:
            raise self.error(
                node,
                (),
                f"too many nested aliases: reading this file means visiting more than "
                f"{NODE_BUDGET} values; use fewer anchors (&) and aliases (*)",
            )

    def compose(self, text: str) -> Node | None:
        try:
            return yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            # Built from the parts, never str(exc): the snippet it quotes could hold a token.
            mark = exc.problem_mark or exc.context_mark
            where = f"{self.shown}:{mark.line + 1}:{mark.column + 1}" if mark else self.shown
            problem = exc.problem or "invalid YAML"
            if exc.context:
                on = f" on line {exc.context_mark.line + 1}" if exc.context_mark else ""
                problem = f"{exc.context}{on}, {problem}"
            if "expected a single document" in problem:
                problem += "; the file must hold exactly one YAML document (no second '---')"
            raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
        except ReaderError as exc:
            char = exc.character
            code = char if isinstance(char, int) else ord(str(char)[:1] or " ")
            raise self.error(
                text.count("\n", 0, exc.position) + 1,
                (),
                f"YAML cannot contain the character U+{code:04X} (a control character or an "
                "unpaired surrogate); remove it",
            ) from None
        except yaml.YAMLError as exc:
            raise self.error(None, (), f"not valid YAML: {type(exc).__name__}") from None
        except RecursionError:
            raise self.error(None, (), "the YAML is nested too deeply") from None

    def build(self, node: Node, path: KeyPath, declared: Any) -> object:
        """Plain data for `node`, descending only where `declared` expects a mapping or list."""
        if isinstance(node, MappingNode) and spec.struct(declared) is not None:
            data: dict[str, object] = {}
            for name, (key, value) in self.flatten(node, path, set()).items():
                self.nodes[where := (*path, name)] = (key, value)
                field = spec.step(declared, name)  # None: an unknown key, which msgspec names
                if field is None or not _is_null(value):  # `key:` takes the default
                    data[name] = field and self.build(value, where, field)
            return data
        if isinstance(node, SequenceNode) and (item := spec.step(declared, 0)) is not None:
            for i, child in enumerate(node.value):
                self.visit(child)
                self.nodes[where := (*path, i)] = (child, child)
            return [self.build(child, (*path, i), item) for i, child in enumerate(node.value)]
        if not isinstance(node, ScalarNode):
            return node  # where no mapping or list is declared: msgspec says what is wrong
        if node.tag == _STR:
            form = spec.FORMS.get(spec.info(declared).get("form", ""))
            if form is not None and re.fullmatch(form[0], node.value):
                return form[1](node.value)  # "30s" → 30.0, then checked against the limits
            return str(node.value)
        try:  # null, bool, int, float; a date, !!binary or a custom tag fits no key
            return SafeConstructor().construct_object(node)
        except ConstructorError:
            return node
        except (ValueError, ArithmeticError, LookupError, TypeError):  # `!!int abc`, 9999…
            kind = "true or false" if node.tag == _BOOL else "a number (too large or malformed)"
            raise self.at(path, f"cannot read {_quote(str(node.value))} as {kind}") from None

    def flatten(self, node: MappingNode, path: KeyPath, active: set[int]) -> dict[str, Any]:
        """Key name → (key node, value node), resolving merge keys (`<<: *anchor`)."""
        if id(node) in active:
            raise self.error(node, path, "a merge key (<<) refers to a mapping that contains it")
        active.add(id(node))
        merged: dict[str, tuple[Node, Node]] = {}
        explicit: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            self.visit(key)
            self.visit(value)
            if key.tag == _MERGE:
                for source in value.value if isinstance(value, SequenceNode) else [value]:
                    self.visit(source)
                    if not isinstance(source, MappingNode):
                        raise self.error(
                            source,
                            path,
                            "a merge key (<<) takes a mapping or a list of mappings, "
                            f"got {_describe(source)}",
                        )
                    for name, entry in self.flatten(source, path, active).items():
                        merged.setdefault(name, entry)  # earlier sources win (YAML merge spec)
            elif not isinstance(key, ScalarNode):
                raise self.error(key, path, f"keys must be plain names, got {_describe(key)}")
            elif (name := str(key.value)) in explicit:
                first = _line(explicit[name][0])
                raise self.error(key, (*path, name), f"duplicate key (first given on line {first})")
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
            raise self.explain(path if at else (), problem if at else str(exc)) from None

    def explain(self, path: KeyPath, problem: str) -> ConfigError:
        """A message for msgspec's `problem` at `path`, in the words of the declaration."""
        if problem.startswith("Object contains unknown field"):
            known = list(spec.fields(spec.struct(_type_at(path)) or spec.File))
            keys = [p for p in self.nodes if p and p[:-1] == path and p[-1] not in known]
            key = min(keys, key=lambda p: _line(self.nodes[p][0]))
            return self.error(self.nodes[key][0], key, _unknown(str(key[-1]), known))
        if problem.startswith("Object missing required field"):
            path = (*path, problem.split("`")[1])
            if path not in self.nodes:  # absent, rather than present and empty
                missing = f"required key is missing; expected {expected(_type_at(path))}"
                return self.error(self.nodes[path[:-1]][0], path, missing)
        node, declared = self.nodes[path][1], _type_at(path)
        secret = bool(spec.info(declared).get("secret"))
        got = "an empty list" if "length >=" in problem else _describe(node, secret=secret)
        quoted = node.tag == _STR and node.value.strip().lower() in ("true", "false", "yes", "no")
        hint = " (remove the quotes)" if quoted and bool in spec.parts(declared)[0] else ""
        return self.at(path, f"expected {expected(declared)}, got {got}{hint}")

    def resolve(self, file: spec.File, absolute: Path) -> Config:
        """The public values: paths made absolute, URL and token checked, defaults merged."""
        server = file.server
        if TOKEN_PREFIX in server.token_env:
            raise self.at(
                ("server", "token_env"),
                "this looks like the token itself; token_env takes the *name* of the "
                "environment variable that holds it (e.g. JATOS_TOKEN)",
            )
        ca_bundle = self.path(("server", "ca_bundle"), server.ca_bundle)
        if ca_bundle is not None and not os.path.exists(ca_bundle):
            raise self.at(("server", "ca_bundle"), f"{ca_bundle} does not exist")
        token = None if server.token is None else self.inline_token(server.token)
        token_file = self.path(("server", "token_file"), server.token_file)
        resolved = {"token_file": token_file, "ca_bundle": ca_bundle, "inline_token": token}
        public = _public(ServerConfig, server, url=self.url(server.url), **resolved)
        mappings: list[MappingConfig] = []
        for i, entry in enumerate(file.mappings):
            mappings.append(self.mapping(("mappings", i), entry, file.defaults, mappings))
        secrets = [absolute, *([token_file] if token_file else [])]
        kept_out = tuple(keep_out(m, secrets) for m in mappings)
        state_dir = self.path(("state_dir",), file.state_dir)
        return Config(absolute, public, kept_out, state_dir, _public(WatchConfig, file.watch))

    def url(self, raw: str) -> str:
        key = ("server", "url")
        # A URL with "@" may carry a password: never echo it.
        got = _describe(self.nodes[key][1]) if "@" not in raw else "a URL with '@' (not shown)"
        bad = f"expected the base URL of JATOS, e.g. https://jatos.example.org, got {got}"
        if not raw or not raw.isprintable() or any(c.isspace() for c in raw):
            raise self.at(key, bad + " (no spaces or control characters allowed)")
        try:
            parts = urlsplit(raw)
            _port = parts.port  # raises ValueError for a port that is not a number
            host = parts.hostname
        except ValueError:
            raise self.at(key, bad) from None
        if "@" in parts.netloc:
            raise self.at(
                key,
                "the URL must not contain a user name or password (user:pass@); "
                "the API token authenticates",
            )
        if parts.scheme.lower() not in ("http", "https") or not host:
            raise self.at(key, bad)
        if parts.query or parts.fragment or "?" in raw or "#" in raw:
            raise self.at(key, "the URL must not contain a ?query or #fragment; give the base URL")
        base, prefix = f"{parts.scheme.lower()}://{parts.netloc}", parts.path.rstrip("/")
        if (cut := prefix.lower().find("/jatos/api")) >= 0:
            raise self.at(
                key,
                f"give the base URL of JATOS, without /jatos/api…: {_quote(base + prefix[:cut])}",
            )
        return base + prefix

    def inline_token(self, value: str) -> Token:
        key = ("server", "token")
        if self.mode & 0o077:
            raise self.at(
                key,
                "an inline token is accepted only from a file that group and others cannot "
                f"read, and this file has mode {self.mode & 0o777:04o}; run `chmod 600 "
                f"{self.shown}`, or move the token to a file named by token_file (or to "
                "$JATOS_TOKEN)",
            )
        line = _line(self.nodes[key][1])
        return check_token_format(value, source=f"{self.shown}:{line}: server.token")

    def mapping(
        self, at: KeyPath, entry: spec.Mapping, defaults: spec.Policy, done: list[MappingConfig]
    ) -> MappingConfig:
        """One entry of `mappings:` over `defaults:`, with a name and a study of its own."""
        folder = self.path((*at, "folder"), entry.folder) or Path()  # required: never None
        name = folder.name if entry.name is None else entry.name
        if (problem := _name_problem(name)) is not None and entry.name is None:
            raise self.at(
                at,
                f"cannot use the folder's name {_quote(name)} as the mapping's name "
                f"({problem}); add name:",
            )
        if problem is not None:
            raise self.at((*at, "name"), f"{_quote(name)} cannot be a name: {problem}")
        policy = {}
        for key in spec.fields(spec.Policy):  # the mapping's own value, else that of defaults:
            given = self.nodes.get((*at, key), (None, None))[1]
            policy[key] = getattr(defaults if _is_null(given) else entry, key)
        # The defaults' patterns first, so that a mapping's own "!pattern" can re-include.
        policy["ignore"] = self.patterns(("defaults", "ignore"), defaults.ignore) + (
            self.patterns((*at, "ignore"), entry.ignore)
        )
        line = _line(self.nodes[at][1])
        result = MappingConfig(
            name=name, folder=folder, study=str(entry.study), line=line, **policy
        )
        for index, other in enumerate(done):
            where = f"mappings[{index}] (line {other.line})"
            if other.name == name:
                named, how = (
                    ((*at, "name"), "the name")
                    if entry.name is not None
                    else (
                        at,
                        "the name taken from its folder,",
                    )
                )
                raise self.at(
                    named,
                    f"{how} {_quote(name)} is already used by {where}; give each mapping "
                    "its own name:",
                )
            if other.study == result.study:
                raise self.at(
                    (*at, "study"),
                    f"study {result.study} is already synced by {where}; two folders cannot "
                    "share one study",
                )
        return result

    def patterns(self, at: KeyPath, value: str | tuple[str, ...]) -> tuple[str, ...]:
        found = (
            {at: value} if isinstance(value, str) else {(*at, i): p for i, p in enumerate(value)}
        )
        for where, pattern in found.items():
            if (problem := pattern_problem(pattern)) is not None:
                raise self.at(
                    where, f"{_quote(pattern)} is not a valid gitignore pattern: {problem}"
                )
        return tuple(found.values())

    def path(self, at: KeyPath, text: str | None) -> Path | None:
        """`text` as an absolute, normalised path: `~` expanded, relative to the file's folder."""
        if text is not None and "\x00" in text:
            raise self.at(at, "a path cannot contain a NUL character")
        try:
            return (
                None
                if text is None
                else Path(os.path.normpath(self.base_dir / Path(text).expanduser()))
            )
        except RuntimeError:
            raise self.at(
                at, f"cannot expand ~ in {_quote(str(text))}: unknown user or no home directory"
            ) from None


def _public(cls: type[_T], declared: msgspec.Struct, **resolved: Any) -> _T:
    """`cls` with the `resolved` values, and the others as declared under the same name
    (only the public names carry their unit: `timeout_s` is the key `timeout`)."""
    names = [f.name for f in dataclasses.fields(cls)]
    return cls(
        **{
            n: resolved[n] if n in resolved else getattr(declared, n.removesuffix("_s"))
            for n in names
        }
    )


def _type_at(path: KeyPath) -> Any:
    return functools.reduce(spec.step, path, spec.File)


def expected(declared: Any) -> str:
    """What a key must hold, in words: from its type, form and limits, else its description."""
    options, info, struct = spec.parts(declared)[0], spec.info(declared), spec.struct(declared)
    (low, high), form = spec.limits(declared), info.get("form")
    if "expected" in info:
        return str(info["expected"])
    if form == "duration":
        return (
            f"a duration from {_seconds(low)} to {_seconds(high)}: a number of seconds such as "
            '30, or text such as "500ms", "30s", "2m"'
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
    places: dict[str, list[str]] = {
        n: ["at the top level of the file"] for n in spec.fields(spec.File)
    }
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
    if tag in (_BOOL, _TAG + "int", _TAG + "float"):
        shown = raw if len(raw) <= 40 else raw[:37] + "…"
        if tag == _BOOL and raw not in ("true", "false"):
            return f"{shown} (which YAML reads as {str(raw.lower() in ('yes', 'on')).lower()})"
        return shown
    if tag == _TAG + "timestamp":
        return f"the date {_quote(raw)}"
    return f"{_quote(raw)} tagged {tag.replace(_TAG, '!!')}"


def _seconds(value: float) -> str:
    if value >= 3600 and value % 3600 == 0:
        return f"{value / 3600:g} h"
    return f"{value / 60:g} min" if value >= 60 and value % 60 == 0 else f"{value:g} s"


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
