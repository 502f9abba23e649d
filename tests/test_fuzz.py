"""Fuzzed input (issue 5, item 4): random configuration files and random file names.

(a) Configuration: YAML documents generated structurally (wrong types, unicode keys and
values, huge numbers, deep nesting, alias bombs, random text and bytes) go through the real
`cli.main(["-c", path, "sync"])`. A broken file must end in exit 2 with exactly one
`jatos-sync:` line on stderr, never a traceback; a valid but odd one may reach the network,
which is a closed port on 127.0.0.1, and end in exit 5. Any token in the file stays hidden.

(b) File names: control characters, 255-byte names, names JATOS 3.10 refuses, names that
differ only in letter case, NFC/NFD pairs, spaces at the ends, synced to the stand-in in
both personalities. Each pass ends with exit 0 or 1; each local file either arrives intact
or is listed in `skipped`/`failed` with a reason; a second pass uploads nothing that arrived.
"""

from __future__ import annotations

import io
import json
import os
import socket
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from jatos_sync.cli import main
from jatos_sync.client import JatosClient
from jatos_sync.config import Config
from jatos_sync.ignore import IGNORE_FILE_NAME, IgnoreRules
from jatos_sync.model import RelPath
from jatos_sync.testing import StandInServer, make_token
from tests.conftest import assert_no_token

FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,  # the same examples in CI on every run
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _no_sleep(_seconds: float) -> None:
    """No backoff waits: a fuzzed `retries: 90` must not make the test slow."""


def _fast_client(config: Config, token: Any) -> JatosClient:
    return JatosClient.for_server(config.server, token, sleep=_no_sleep)


def _run_cli(argv: list[str], environ: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, environ=environ, stdout=out, stderr=err, client_factory=_fast_client)
    return code, out.getvalue(), err.getvalue()


def _plain_lines(err: str) -> list[str]:
    """stderr lines that are not JSON log events."""
    return [line for line in err.splitlines() if line and not line.startswith("{")]


# ================================================================ (a) configuration files

SENTINEL = "@@TOKEN@@"  # replaced by the real token after the document is dumped
KEYS = (
    "server",
    "state_dir",
    "watch",
    "defaults",
    "mappings",
    "url",
    "token_env",
    "token_file",
    "token",
    "timeout",
    "retries",
    "concurrency",
    "verify_tls",
    "ca_bundle",
    "debounce",
    "delete_delay",
    "reconcile_interval",
    "polling",
    "poll_interval",
    "name",
    "folder",
    "study",
    "ignore",
    "delete",
    "backup",
    "max_delete",
    "max_delete_percent",
    "<<",
)
ODD_TEXT = (
    "",
    " ",
    "~",
    "~nosuchuser/x",
    "..",
    "/",
    "1",
    "-1",
    "0x1F",
    "1e400",
    "30s",
    "1m30s",
    "5 ms",
    "yes",
    "No",
    "null",
    "!",
    "[[:alpha:]]",
    "a\\",
    "ftp://jatos.example.org",
    "https://user:pw@jatos.example.org",
    "Bearer " + SENTINEL,
    SENTINEL,
    "x" + SENTINEL,
    "JATOS_TOKEN",
    "00000000-0000-0000-0000-00000000000Z",
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**80),
    st.integers(min_value=-(10**300), max_value=10**300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=24).filter(lambda s: "http" not in s.lower()),
    st.sampled_from(ODD_TEXT),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=10), st.integers(), st.booleans())
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=16,
)


def _dump(document: object, *, flow: bool, unicode: bool) -> str:
    return yaml.safe_dump(document, default_flow_style=flow, allow_unicode=unicode)


@st.composite
def random_documents(draw: st.DrawFn) -> str:
    """A random YAML value, usually a mapping with some of the real keys."""
    top = draw(st.one_of(values, st.dictionaries(keys, values, min_size=1, max_size=6)))
    return _dump(top, flow=draw(st.booleans()), unicode=draw(st.booleans()))


MUTABLE = (
    ("server",),
    ("server", "url"),
    ("server", "token_env"),
    ("server", "token_file"),
    ("server", "token"),
    ("server", "timeout"),
    ("server", "retries"),
    ("server", "concurrency"),
    ("server", "verify_tls"),
    ("server", "ca_bundle"),
    ("server", "extra"),
    ("state_dir",),
    ("watch",),
    ("watch", "debounce"),
    ("watch", "polling"),
    ("watch", "reconcile_interval"),
    ("defaults",),
    ("defaults", "ignore"),
    ("defaults", "max_delete_percent"),
    ("mappings",),
    ("mappings", 0),
    ("mappings", 0, "name"),
    ("mappings", 0, "folder"),
    ("mappings", 0, "study"),
    ("mappings", 0, "ignore"),
    ("mappings", 0, "delete"),
    ("mappings", 0, "max_delete"),
    ("mappings", 1),
    ("unknown",),
)


def _child(parent: Any, step: str | int) -> Any:
    """`parent[step]` if that is a mapping or list to descend into, else None."""
    if isinstance(parent, dict) and isinstance(step, str):
        child = parent.get(step)
    elif isinstance(parent, list) and isinstance(step, int) and step < len(parent):
        child = parent[step]
    else:
        return None
    return child if isinstance(child, (dict, list)) else None


@st.composite
def mutated_configs(draw: st.DrawFn, url: str) -> str:
    """A valid configuration with a few values replaced, added or removed."""
    document: dict[str, Any] = {
        "server": {"url": url, "retries": 0, "timeout": 1},
        "state_dir": "state",
        "mappings": [{"name": "exp", "folder": "experiment", "study": 1}],
    }
    for path in draw(st.lists(st.sampled_from(MUTABLE), min_size=1, max_size=3)):
        parent: Any = document
        for step in path[:-1]:
            parent = _child(parent, step)
        last = path[-1]
        if isinstance(parent, dict) and isinstance(last, str):
            if draw(st.integers(0, 4)) == 0:
                parent.pop(last, None)
            else:
                parent[last] = draw(values)
        elif isinstance(parent, list) and isinstance(last, int):
            if last < len(parent):
                parent[last] = draw(values)
            else:
                parent.append(draw(values))
    return _dump(document, flow=draw(st.booleans()), unicode=draw(st.booleans()))


def _alias_bomb(depth: int, width: int, where: str, url: str) -> str:
    """The "billion laughs" pattern: each level refers `width` times to the one below."""
    lines = ['l0: &l0 ["lol", "lol"]']
    for level in range(1, depth + 1):
        refs = ", ".join([f"*l{level - 1}"] * width)
        lines.append(f"l{level}: &l{level} [{refs}]")
    body = "\n".join(lines)
    top = f"*l{depth}"
    if where == "top":
        return f"{body}\nserver: {top}\n"
    if where == "merge":
        # Merge keys are resolved by walking: each level merges `width` copies of the last.
        chain = [f"&m0 {{url: {url}, retries: 0}}"]
        for level in range(1, depth + 1):
            chain.append(f"&m{level} {{<<: [{', '.join([f'*m{level - 1}'] * width)}]}}")
        return f"server: {{<<: [{', '.join(chain)}]}}\nmappings: [{{folder: x, study: 1}}]\n"
    # Defined inside the first mapping's ignore list, used as the list of mappings.
    inline = ", ".join(f"&l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, depth + 1))
    return (
        f"server: {{url: {url}, retries: 0}}\n"
        f"defaults: {{ignore: [&l0 [lol, lol], {inline}]}}\n"
        f"mappings: {top}\n"
    )


def deep_nesting(depth: int, kind: str) -> str:
    if kind == "flow-list":
        return "server: " + "[" * depth + "]" * depth + "\n"
    if kind == "flow-map":
        return "server: " + "{a: " * depth + "1" + "}" * depth + "\n"
    return "".join(f"{'  ' * i}k{i}:\n" for i in range(depth)) + "  " * depth + "v\n"


@pytest.fixture(scope="module")
def closed_url() -> str:
    """http://127.0.0.1:<a port nothing listens on>."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def token() -> str:
    return make_token()


def check_config_file(
    data: bytes, *, token: str, allowed: set[int], mode: int = 0o644
) -> tuple[int, str]:
    """Run `sync` on a config file holding `data`; check the outcome. Returns (code, line)."""
    data = data.replace(SENTINEL.encode(), token.encode())
    with tempfile.TemporaryDirectory(prefix="jatos-sync-fuzz-") as tmp:
        path = Path(tmp) / "jatos-sync.yaml"
        path.write_bytes(data)
        os.chmod(path, mode)
        code, out, err = _run_cli(["-c", str(path), "sync"], {"JATOS_TOKEN": token})
    assert "Traceback" not in out + err
    assert_no_token({token}, out + err, "the output for a fuzzed configuration")
    assert code in allowed, f"exit {code}:\n{err}"
    plain = _plain_lines(err)
    assert len(plain) == 1, f"expected one message line, got:\n{err}"
    assert plain[0].startswith("jatos-sync: ")
    return code, plain[0]


@FUZZ
@given(document=random_documents())
def test_random_yaml_documents_are_configuration_errors(document: str, token: str) -> None:
    check_config_file(document.encode("utf-8"), token=token, allowed={2})


@FUZZ
@given(data=st.data(), private=st.booleans())
def test_mutated_configurations_fail_cleanly(
    data: st.DataObject, private: bool, token: str, closed_url: str
) -> None:
    document = data.draw(mutated_configs(closed_url))
    mode = 0o600 if private else 0o644
    check_config_file(document.encode("utf-8"), token=token, allowed={2, 5}, mode=mode)


@FUZZ
@given(text=st.text(max_size=300))
def test_random_text_is_a_configuration_error(text: str, token: str) -> None:
    check_config_file(text.encode("utf-8"), token=token, allowed={2})


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_are_a_configuration_error(data: bytes, token: str) -> None:
    check_config_file(data, token=token, allowed={2})


@pytest.mark.parametrize("where", ["top", "merge", "mappings"])
@pytest.mark.parametrize(("depth", "width"), [(9, 9), (30, 2), (4, 60)])
def test_alias_bombs_are_refused_quickly(
    where: str, depth: int, width: int, token: str, closed_url: str
) -> None:
    _code, line = check_config_file(
        _alias_bomb(depth, width, where, closed_url).encode(), token=token, allowed={2}
    )
    if where == "merge":  # the only place the walk multiplies: the node budget stops it
        assert "too many nested aliases" in line, line


@pytest.mark.parametrize("kind", ["flow-list", "flow-map", "block"])
@pytest.mark.parametrize("depth", [100, 3000])
def test_deep_nesting_is_a_configuration_error(
    kind: str, depth: int, token: str, closed_url: str
) -> None:
    check_config_file(deep_nesting(depth, kind).encode(), token=token, allowed={2})


@pytest.mark.parametrize(
    "value",
    ["9" * 5000, "-" + "9" * 5000, "1e99999", "0x" + "f" * 4000, "1" + "0" * 40, ".inf", ".nan"],
)
@pytest.mark.parametrize("key", ["retries", "timeout", "concurrency", "study", "max_delete"])
def test_huge_and_odd_numbers_are_configuration_errors(
    key: str, value: str, token: str, closed_url: str
) -> None:
    server = {"url": closed_url, "retries": "0"}
    mapping = {"folder": "experiment", "study": "1"}
    if key in ("retries", "timeout", "concurrency"):
        server[key] = value
    else:
        mapping[key] = value
    text = (
        "server:\n"
        + "".join(f"  {k}: {v}\n" for k, v in server.items())
        + "mappings:\n  - "
        + "\n    ".join(f"{k}: {v}" for k, v in mapping.items())
        + "\n"
    )
    # max_delete has no upper bound: a huge one is a valid "no limit" and reaches the server.
    check_config_file(text.encode(), token=token, allowed={2, 5} if key == "max_delete" else {2})


# ================================================================ (b) file names


@pytest.fixture(params=["3.9", "3.10"])
def names_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StandInServer]:
    server = StandInServer(personality=request.param, data_dir=tmp_path / "server")
    server.start()
    try:
        server.add_user("alice")
        server.token = server.add_token("alice")
        yield server
    finally:
        server.stop()


class NameSync:
    """One fresh study, folder and state directory per example, on a shared stand-in."""

    def __init__(self, server: StandInServer, root: Path) -> None:
        assert server.token is not None
        self.server, self.token = server, server.token
        self.study = server.add_study("fuzz", members=["alice"])
        self.folder = root / "experiment"
        self.folder.mkdir(parents=True)
        self.config = root / "jatos-sync.yaml"
        self.config.write_text(
            f"server:\n  url: {server.url}\n  retries: 0\n  timeout: 5\n"
            f"state_dir: {root / 'state'}\n"
            f"mappings:\n  - name: fuzz\n    folder: {self.folder}\n    study: {self.study.id}\n",
            encoding="utf-8",
        )

    def sync(self) -> dict[str, Any]:
        code, out, err = _run_cli(
            ["-c", str(self.config), "sync", "--json"], {"JATOS_TOKEN": self.token}
        )
        assert "Traceback" not in out + err
        assert_no_token({self.token}, out + err, "the output")
        assert code in (0, 1), f"exit {code}:\n{out}\n{err}"
        doc = json.loads(out)
        assert doc["exit_code"] == code
        (mapping,) = doc["mappings"]
        return dict(mapping)

    def check(self, files: dict[str, bytes]) -> tuple[set[str], dict[str, Any]]:
        """Sync `files` twice; check the property; return (arrived, first result)."""
        for name, content in files.items():
            (self.folder / name).parent.mkdir(parents=True, exist_ok=True)
            (self.folder / name).write_bytes(content)
        rules = IgnoreRules.for_folder(self.folder)
        first = self.sync()
        reported = {p["path"]: p["reason"] for p in first["skipped"]}
        reported.update({p["path"]: p["error"] for p in first["failed"]})
        remote = self.server.files(self.study)
        arrived: set[str] = set()
        for name, content in files.items():
            if rules.is_ignored(RelPath(name)):
                assert name not in remote, f"ignored {name!r} was uploaded"
            elif remote.get(name) == content:
                arrived.add(name)
            else:
                assert reported.get(name), f"{name!r} neither arrived nor was reported"
        assert set(remote) <= set(files), f"unexpected server files {set(remote) - set(files)}"

        self.server.clear_requests()
        second = self.sync()
        again = set(second["uploaded"]) & arrived
        assert not again, f"uploaded again although they had arrived: {again}"
        assert not second["deleted"], f"deleted on the second pass: {second['deleted']}"
        assert self.server.files(self.study) == remote
        return arrived, first


# Characters for generated names: anything but "/" and NUL (which no file name can hold).
name_text = st.text(
    st.characters(exclude_characters="/\x00", exclude_categories=["Cs"]),
    min_size=1,
    max_size=12,
)
SPECIAL_NAMES = (
    "a\x01b",
    "tab\there",
    "new\nline",
    "del\x7f",
    "a:b",
    "x*y",
    "q?",
    "<>",
    '"',
    "|",
    "back\\slash",
    "Case.txt",
    "case.txt",
    "caf\u00e9",
    "cafe\u0301",
    "é" * 127 + "a",
    "x" * 255,
    "jatos.js",
    "index.html",
    " lead",
    "trail ",
    "%41+%2B",
    "a b",
)


def _fits(name: str) -> bool:
    return name not in (".", "..", IGNORE_FILE_NAME) and len(name.encode("utf-8")) <= 255


file_names = st.lists(
    st.one_of(name_text, st.sampled_from(SPECIAL_NAMES)).filter(_fits),
    min_size=1,
    max_size=6,
    unique=True,
)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    # Each example costs two syncs, so shrinking a failure would take a minute; the table
    # tests below name the categories, and the unshrunk example is printed.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(names=file_names, data=st.data())
def test_random_file_names_are_synced_or_reported(
    names_server: StandInServer, names: list[str], data: st.DataObject
) -> None:
    files = {name: data.draw(st.binary(max_size=40), label=repr(name)) for name in names}
    with tempfile.TemporaryDirectory(prefix="jatos-sync-names-") as tmp:
        NameSync(names_server, Path(tmp)).check(files)


TABLE: dict[str, tuple[str, ...]] = {
    "control characters": ("a\x01b", "tab\there", "new\nline", "del\x7f"),
    "255-byte names": ("é" * 127 + "a", "x" * 255, "日" * 85, "ü" * 100 + "y" * 55),
    "refused by JATOS 3.10": ("a:b", "x*y", "q?", "<>", 'say "hi"', "p|p", "back\\slash"),
    "NFC/NFD pair": (unicodedata.normalize("NFC", "café.txt"), "cafe\u0301.txt"),
    "spaces at the ends": (" lead.txt", "trail.txt ", "mid dle.txt"),
    "URL-special characters": ("100%.txt", "a+b.txt", "q#frag.txt", "semi;colon.txt"),
}
REFUSED_BY_310 = 'JATOS 3.10 refuses names with control characters or any of \\ < > : " | ? *'


@pytest.mark.parametrize("category", sorted(TABLE))
def test_file_name_categories_are_synced_or_reported(
    names_server: StandInServer, tmp_path: Path, category: str
) -> None:
    names = TABLE[category]
    files = {name: f"content of {name!r}\n".encode() for name in names}
    arrived, first = NameSync(names_server, tmp_path / "sync").check(files)
    skipped = {p["path"]: p["reason"] for p in first["skipped"]}
    refuses = names_server.api_version == "1.1.0"
    if category in ("control characters", "refused by JATOS 3.10") and refuses:
        assert skipped == dict.fromkeys(names, REFUSED_BY_310)
        assert not arrived
    elif category == "refused by JATOS 3.10":
        # A backslash is never trusted in a server's listing, so it is not sent either.
        assert set(skipped) == {"back\\slash"} and "backslash" in skipped["back\\slash"]
        assert arrived == set(names) - {"back\\slash"}
    elif category == "spaces at the ends":
        pass  # the property of `check` is the expectation: arrive intact or be reported
    else:
        assert arrived == set(names), f"missing: {set(names) - arrived}, skipped: {skipped}"


@pytest.mark.parametrize("pair", [("Case.txt", "case.txt"), ("img/Logo.PNG", "img/logo.png")])
def test_names_differing_only_in_letter_case_upload_one_and_skip_the_other(
    names_server: StandInServer, tmp_path: Path, pair: tuple[str, str]
) -> None:
    files = {name: f"{name}\n".encode() for name in pair}
    arrived, first = NameSync(names_server, tmp_path / "sync").check(files)
    assert len(arrived) == 1 and len(first["uploaded"]) == 1
    (skipped,) = first["skipped"]
    assert skipped["path"] in pair and skipped["path"] not in arrived
    assert "letter case" in skipped["reason"]


def test_nfc_and_nfd_spellings_are_two_files_on_a_linux_server(
    names_server: StandInServer, tmp_path: Path
) -> None:
    nfc, nfd = (
        unicodedata.normalize("NFC", "Müller.csv"),
        unicodedata.normalize("NFD", "Müller.csv"),
    )
    assert nfc != nfd
    arrived, _ = NameSync(names_server, tmp_path / "sync").check({nfc: b"nfc\n", nfd: b"nfd\n"})
    assert arrived == {nfc, nfd}
