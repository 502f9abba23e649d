"""Security review, as tests (issue 5, item 5; the write-up is SECURITY.md).

- The token never appears in logs, argv, error messages, JSON, state or backups: a broad set
  of commands runs with every token source (environment, token_file, inline, systemd
  credential) and with bad, unknown, expired and revoked tokens, and every captured output
  and every file under the state directory, the synced folder and the server's assets is
  searched for each token and for its random middle part alone.
- TLS: verification is on unless `verify_tls: false`, `ca_bundle` reaches the session, and
  plain http:// to a host that is not loopback is warned about.
- Symlinks: loops do not hang a sync; targets outside the folder are uploaded (the policy
  of scan.py); dangling links are reported.
- The state directory and backups are private (0700 directories, 0600 files).
- YAML is read with the safe loader only; nothing runs a shell.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import os
import re
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
import requests_mock
import structlog

import jatos_sync
from jatos_sync.cli import build_parser, main
from jatos_sync.client import JatosClient
from jatos_sync.config import load_config
from jatos_sync.credentials import load_token
from jatos_sync.logs import configure_logging
from jatos_sync.testing import make_token
from tests.conftest import World, assert_no_token


def secrets_of(tokens: set[str]) -> list[str]:
    """Each token and its 31-character random middle part (a partial leak)."""
    return [s for token in tokens for s in (token, token[4:35])]


def files_below(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.is_dir():
            yield from (p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def config_text(
    world: World, *, token_line: str = "", url: str | None = None, retries: int = 0
) -> str:
    return (
        f"server:\n  url: {url or world.server.url}\n  retries: {retries}\n  timeout: 5\n"
        f"{token_line}"
        f"state_dir: {world.state_dir}\n"
        f"mappings:\n  - name: exp\n    folder: {world.folder}\n    study: {world.study_ref}\n"
    )


def write_private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    return path


class Transcript:
    """Runs the CLI in process and keeps every byte it printed."""

    def __init__(self) -> None:
        self.outputs: list[tuple[str, str]] = []  # (label, text)

    def run(self, config: Path, *args: str, environ: dict[str, str]) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(["-c", str(config), *args], environ=environ, stdout=out, stderr=err)
        label = " ".join(args)
        self.outputs.append((f"stdout of {label}", out.getvalue()))
        self.outputs.append((f"stderr of {label}", err.getvalue()))
        return code, out.getvalue(), err.getvalue()


GOOD_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("sync", "--yes"),  # the first sync replaces a colleague's file: needs --yes
    ("sync",),
    ("sync", "--json"),
    ("status",),
    ("status", "--json"),
    ("check",),
    ("check", "--json"),
    ("sync", "--dry-run"),
    ("sync", "--dry-run", "--json"),
    ("-v", "sync"),
    ("-v", "sync", "--json"),
    ("-v", "check", "--json"),
    ("-v", "--log-format", "console", "sync"),
    ("-v", "--log-format", "json", "status", "--json"),
    ("-q", "sync"),
)
BAD_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("sync",),
    ("sync", "--json"),
    ("-v", "sync", "--json"),
    ("-v", "check"),
    ("check", "--json"),
    ("-v", "--log-format", "console", "status"),
)


def test_no_token_in_any_output_state_backup_or_folder(world_any: World, tmp_path: Path) -> None:
    world, server = world_any, world_any.server
    transcript = Transcript()
    tokens = {world.token}
    configs = tmp_path / "configs"
    configs.mkdir()

    world.put("index.html", "<html>v1</html>\n")
    world.put("js/main.js", "console.log(1);\n")
    world.put("img/logo.png", b"\x89PNG" + bytes(range(64)))
    world.put("old.js", "// old\n")
    # A colleague's file on the server: backed up before it is overwritten.
    server.put_file(world.study, "js/main.js", b"// the colleague's version\n")

    # Every good token source, each with its own token.
    file_token, inline_token, credential_token = (server.add_token("alice") for _ in range(3))
    tokens |= {file_token, inline_token, credential_token}
    token_file = write_private(configs / "token", file_token + "\n")
    credentials = configs / "credentials"
    credentials.mkdir()
    write_private(credentials / "jatos-token", credential_token)
    sources: list[tuple[Path, dict[str, str]]] = [
        (write_private(configs / "env.yaml", config_text(world)), {"JATOS_TOKEN": world.token}),
        (
            write_private(
                configs / "file.yaml",
                config_text(world, token_line=f"  token_file: {token_file}\n"),
            ),
            {},
        ),
        (
            write_private(
                configs / "inline.yaml", config_text(world, token_line=f"  token: {inline_token}\n")
            ),
            {},
        ),
        (
            write_private(configs / "credential.yaml", config_text(world)),
            {"CREDENTIALS_DIRECTORY": str(credentials)},
        ),
    ]
    for number, (config, environ) in enumerate(sources):
        world.put("js/main.js", f"console.log({number + 2});\n")  # something to upload
        for args in GOOD_COMMANDS:
            code, out, err = transcript.run(config, *args, environ=environ)
            assert code == 0, f"{config.name} {args}: exit {code}\n{out}\n{err}"
        if number == 1:
            (world.folder / "old.js").unlink()  # something to delete
            server.put_file(world.study, "img/logo.png", b"edited in the GUI")
            world.put("img/logo.png", b"\x89PNG new")

    # Bad tokens: malformed (caught offline), unknown, expired and revoked (refused).
    good = world.token
    expired, revoked = server.add_token("alice"), server.add_token("alice")
    server.expire_token(expired)
    server.revoke_token(revoked)
    bad = {
        "typo": (good[:-1] + ("0" if good[-1] != "0" else "1"), 2),
        "truncated": (good[:-3], 2),
        "bearer": ("Bearer " + good, 2),
        "unknown": (make_token(), 3),
        "expired": (expired, 3),
        "revoked": (revoked, 3),
    }
    tokens |= {value for value, _ in bad.values()}
    env_config = sources[0][0]
    for name, (value, expected) in bad.items():
        for args in BAD_COMMANDS:
            code, out, err = transcript.run(env_config, *args, environ={"JATOS_TOKEN": value})
            assert code == expected, f"{name} {args}: exit {code}\n{out}\n{err}"
        inline = write_private(
            configs / f"inline-{name}.yaml", config_text(world, token_line=f'  token: "{value}"\n')
        )
        code, out, err = transcript.run(inline, "sync", "--json", environ={})
        assert code == expected, f"inline {name}: exit {code}\n{out}\n{err}"

    backups = list(files_below(world.state_dir / "backups"))
    assert len(backups) >= 2, "the sweep should have made backups to search"
    for label, text in transcript.outputs:
        assert_no_token(tokens, text, label)
    for path in files_below(world.state_dir, world.folder, server.assets_root):
        text = path.read_bytes().decode("utf-8", "replace")
        assert_no_token(tokens, text, str(path))
    world.tokens_used |= tokens  # and the fixture checks the disk once more at teardown


def test_an_inline_token_in_a_readable_config_is_refused_without_echoing_it(
    world310: World,
) -> None:
    token = world310.server.add_token("alice")
    config = write_private(
        world310.config_path, config_text(world310, token_line=f"  token: {token}\n"), 0o644
    )
    transcript = Transcript()
    for args in (("sync",), ("check", "--json"), ("-v", "status", "--json")):
        code, _out, err = transcript.run(config, *args, environ={})
        assert code == 2
        assert "chmod 600" in err and "0644" in err
    for label, text in transcript.outputs:
        assert_no_token({token}, text, label)
    assert world310.server.requests == [], "nothing may be sent with a refused token"
    os.chmod(config, 0o600)
    code, _out, _err = transcript.run(config, "check", environ={})
    assert code == 0


def test_the_command_line_has_no_option_that_takes_a_token() -> None:
    """Options may name a token *file* (`init --token-file`), never take the token itself."""
    parser = build_parser()
    parsers = [parser]
    for action in parser._actions:  # argparse has no public accessor for subcommands
        if isinstance(action.choices, dict):
            parsers += [
                p for p in action.choices.values() if isinstance(p, argparse.ArgumentParser)
            ]
    assert len(parsers) > 4
    for each in parsers:
        for action in each._actions:
            names = " ".join([action.dest, *action.option_strings]).lower()
            assert not re.search(r"token(?![-_]file)|secret|password", names), names


@pytest.mark.parametrize(
    "argv",
    [
        ["sync", "--token={token}"],
        ["--token={token}", "sync"],
        ["{token}"],
        ["-c", "x.yaml", "{token}", "sync"],
        ["sync", "--json={token}"],
        ["status", "--token", "{token}"],
    ],
    ids=["sync-option", "global-option", "as-command", "after-config", "as-value", "separate"],
)
def test_a_token_mistakenly_given_on_the_command_line_is_not_echoed(argv: list[str]) -> None:
    """CI logs keep stderr: a usage error must not repeat a token typed into argv."""
    token = make_token()
    out, err = io.StringIO(), io.StringIO()
    code = main([a.format(token=token) for a in argv], environ={}, stdout=out, stderr=err)
    assert code == 2
    assert_no_token({token}, out.getvalue() + err.getvalue(), "the usage error")


def test_reprs_and_formats_hide_the_token(tmp_path: Path) -> None:
    token = make_token()
    config_path = write_private(
        tmp_path / "jatos-sync.yaml",
        f"server:\n  url: https://jatos.example.org\n  token: {token}\n"
        f"mappings:\n  - folder: exp\n    study: 1\n",
    )
    config = load_config(config_path)
    secret = load_token(config.server, environ={})
    assert secret.reveal() == token
    client = JatosClient(config.server.url, secret)
    try:
        views = [
            repr(config),
            str(config),
            repr(config.server),
            repr(config.mappings),
            repr(secret),
            str(secret),
            f"{secret}",
            f"{secret!r}",
            f"{secret:>60}",
            format(secret, "s"),
            "%s %r" % (secret, secret),  # noqa: UP031 -- the old formatting must hide it too
            repr([secret, {"t": secret}]),
            repr(client),
            str(client),
        ]
    finally:
        client.close()
    for view in views:
        assert_no_token({token}, view, f"a repr: {view[:40]}")


def test_log_lines_mask_anything_that_looks_like_a_token() -> None:
    token = make_token()
    stream = io.StringIO()
    configure_logging(verbosity=1, fmt="json", stream=stream, environ={})
    log = structlog.get_logger("test_security")
    log.info(f"event {token}", value=token, nested={"deep": [token]}, number=1)
    log.warning("error_text", error=f"server said: Bearer {token}")
    for line in stream.getvalue().splitlines():
        json.loads(line)
    assert_no_token({token}, stream.getvalue(), "the log")
    assert "jap_[redacted]" in stream.getvalue()


def test_a_logged_exception_is_masked_too() -> None:
    """The daemon logs unexpected worker exceptions with `log.exception`; the traceback text
    is made after the redaction step today, so a token in an exception message would leak."""
    token = make_token()
    stream = io.StringIO()
    configure_logging(verbosity=0, fmt="json", stream=stream, environ={})
    log = structlog.get_logger("test_security")
    try:
        raise RuntimeError(f"request failed with header Bearer {token}")
    except RuntimeError:
        log.exception("worker_failed", mapping="exp")
    assert "worker_failed" in stream.getvalue()
    assert_no_token({token}, stream.getvalue(), "a logged traceback")


def test_netrc_does_not_replace_the_bearer_token(
    world310: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests reads ~/.netrc (or $NETRC) when a request has no `auth`, and its Basic
    credentials then overwrite the Authorization header: the token is not sent and the
    netrc password goes to JATOS instead."""
    netrc = write_private(tmp_path / "netrc", "machine 127.0.0.1 login bob password hunter2\n")
    monkeypatch.setenv("NETRC", str(netrc))
    world310.put("index.html", "<html></html>\n")
    result = world310.run("sync")
    assert result.code == 0, result.err


def test_config_and_token_files_inside_the_synced_folder_are_never_uploaded(
    world310: World,
) -> None:
    """Study assets are served to everyone who runs the study: a config with an inline token
    (or a token file) kept inside the synced folder must not become one."""
    world, token = world310, world310.token
    world.tokens_used.discard(token)  # the folder holds it on purpose here
    world.put("index.html", "<html></html>\n")
    config = write_private(
        world.folder / "jatos-sync.yaml", config_text(world, token_line=f"  token: {token}\n")
    )
    token_file = world.folder / "jatos-token"
    transcript = Transcript()
    try:
        code, out, err = transcript.run(config, "sync", environ={})
        assert code in (0, 1), out + err
        write_private(token_file, token + "\n")
        write_private(config, config_text(world, token_line=f"  token_file: {token_file}\n"))
        code, out, err = transcript.run(config, "sync", environ={})
        assert code in (0, 1), out + err
        for path, content in world.remote().items():
            text = content.decode("utf-8", "replace")
            assert_no_token({token}, text, f"the study asset {path}")
    finally:
        config.unlink()
        token_file.unlink(missing_ok=True)


# ---------------------------------------------------------------- secrets stay home


@pytest.mark.parametrize("spelled", ["token_file", "folder", "config"])
def test_a_secret_named_through_a_symlink_to_the_folder_is_never_uploaded(
    world310: World, tmp_path: Path, spelled: str
) -> None:
    """Inside is decided resolved: a token file (or a config with an inline token) in the
    folder is kept out however its path, the folder's or the config's, is spelled. Exit 0:
    the path rule keeps it out, not the upload's content check (which would fail it)."""
    world, token = world310, world310.token
    world.put("index.html", "<html></html>\n")
    alias = tmp_path / "alias"
    os.symlink(world.folder, alias)
    secret = write_private(world.folder / "jatos-token", token + "\n")
    if spelled == "token_file":
        text = config_text(world, token_line=f"  token_file: {alias / 'jatos-token'}\n")
        config = write_private(tmp_path / "jatos-sync.yaml", text)
    elif spelled == "folder":
        text = config_text(world, token_line=f"  token_file: {secret}\n")
        text = text.replace(f"folder: {world.folder}\n", f"folder: {alias}\n")
        config = write_private(tmp_path / "jatos-sync.yaml", text)
    else:
        secret.unlink()
        text = config_text(world, token_line=f"  token: {token}\n")
        secret = write_private(world.folder / "lab.yaml", text)
        config = alias / "lab.yaml"
    transcript = Transcript()
    try:
        code, out, err = transcript.run(config, "sync", "--json", environ={})
        assert code == 0, out + err
        assert world.remote() == {"index.html": b"<html></html>\n"}
    finally:
        secret.unlink()
    for label, output in transcript.outputs:
        assert_no_token({token}, output, label)


@pytest.mark.parametrize("folder_spelled", ["real", "alias"])
def test_a_token_file_spelled_through_a_link_inside_the_folder_is_kept_out_by_that_name(
    tmp_path: Path, folder_spelled: str
) -> None:
    """The scan follows `exp/keys -> ../private` and sees the token file as `keys/token`:
    the rule must name it so, though the file itself lies outside the folder."""
    (tmp_path / "private").mkdir()
    (tmp_path / "exp").mkdir()
    os.symlink(tmp_path / "private", tmp_path / "exp" / "keys")
    os.symlink(tmp_path / "exp", tmp_path / "alias")
    folder = tmp_path / ("exp" if folder_spelled == "real" else "alias")
    config = tmp_path / "jatos-sync.yaml"
    config.write_text(
        "server:\n  url: https://jatos.example.org\n"
        f"  token_file: {tmp_path / 'exp' / 'keys' / 'token'}\n"
        f"mappings:\n  - folder: {folder}\n    study: 1\n",
        encoding="utf-8",
    )
    (mapping,) = load_config(config).mappings
    assert mapping.ignore == ("/keys/token*",)


def test_a_hard_link_to_the_token_file_is_refused_by_its_content(
    world_any: World, tmp_path: Path
) -> None:
    """No path names it, so only the content check can catch it: reported as failed (exit
    1) on every pass, never uploaded, never silently skipped, and the token not shown."""
    world, token = world_any, world_any.token
    world.put("index.html", "<html></html>\n")
    token_file = write_private(tmp_path / "token", token + "\n")
    config = write_private(
        tmp_path / "jatos-sync.yaml",
        config_text(world, token_line=f"  token_file: {token_file}\n"),
    )
    os.link(token_file, world.folder / "notes.txt")
    transcript = Transcript()
    try:
        for _ in range(2):
            code, out, err = transcript.run(config, "sync", "--json", environ={})
            assert code == 1, out + err
            failed = json.loads(out)["mappings"][0]["failed"]
            assert [f["path"] for f in failed] == ["notes.txt"]
            assert "notes.txt holds the API token" in failed[0]["error"]
            assert ".jatosignore" in failed[0]["error"]
            assert world.remote() == {"index.html": b"<html></html>\n"}
    finally:
        (world.folder / "notes.txt").unlink()
    for label, output in transcript.outputs:
        assert_no_token({token}, output, label)
    assert world.run("sync").code == 0  # once it is gone, all is well


def test_a_large_file_holding_the_token_is_never_stored_by_the_server(world310: World) -> None:
    world, token = world310, world310.token
    # 3 MiB of data with the token in the last MiB, across a 1 MiB boundary.
    body = bytearray(os.urandom(3 << 20))
    body[(2 << 20) - 20 : (2 << 20) + 21] = token.encode()
    world.put("stimuli/video.bin", bytes(body))
    world.put("index.html", "<html></html>\n")
    world.tokens_used.discard(token)  # the folder holds it on purpose here
    try:
        result = world.run("sync", "--json")
        assert result.code == 1, result.err
        failed = result.json["mappings"][0]["failed"]
        assert [f["path"] for f in failed] == ["stimuli/video.bin"]
        assert world.remote() == {"index.html": b"<html></html>\n"}
        assert_no_token({token}, result.out + result.err, "the CLI output")
    finally:
        (world.folder / "stimuli" / "video.bin").unlink()
        world.tokens_used.add(token)


@pytest.mark.parametrize("chunk", [1, 7, 40, 41, 42, 8192])
@pytest.mark.parametrize("where", ["alone", "start", "end", "across"])
def test_the_upload_reader_refuses_the_token_before_its_last_byte_is_handed_out(
    chunk: int, where: str
) -> None:
    from jatos_sync.errors import FileSyncError
    from jatos_sync.model import RelPath
    from jatos_sync.upload_body import HashingReader

    token = make_token().encode()
    filler = bytes(range(256)) * 40  # 10 KiB
    content = {
        "alone": token,
        "start": token + filler,
        "end": filler + token,
        "across": filler[: 8192 - 17] + token + filler,
    }[where]
    end_of_token = content.index(token) + len(token)
    reader = HashingReader(io.BytesIO(content), len(content), path=RelPath("a"), secret=token)
    sent = b""

    def read_all() -> None:
        nonlocal sent
        while piece := reader.read(chunk):
            sent += piece

    with pytest.raises(FileSyncError) as caught:
        read_all()
    assert len(sent) < end_of_token <= len(content)
    assert str(caught.value).startswith("a holds the API token")
    assert token.decode() not in str(caught.value)


def test_the_upload_reader_hands_out_a_file_without_the_token_unchanged() -> None:
    from jatos_sync.model import RelPath
    from jatos_sync.upload_body import HashingReader

    token = make_token().encode()
    content = (token[:-1] + b"x" + token[1:]) * 1000  # near misses, on every boundary
    reader = HashingReader(io.BytesIO(content), len(content), path=RelPath("a"), secret=token)
    sent = b""
    while piece := reader.read(40):
        sent += piece
    assert sent == content


@pytest.mark.parametrize(
    "name",
    [
        ".envrc",
        ".netrc",
        ".ssh/id_ed25519",
        ".ssh/config",
        ".git-credentials",
        ".npmrc",
        ".pypirc",
        ".pgpass",
        "id_rsa",
        "keys/lab.p12",
        "credentials.json",
        "jatos-sync.yaml.bak",
        ".bash_history",
    ],
)
def test_common_secret_files_in_the_folder_are_never_uploaded(world_any: World, name: str) -> None:
    world_any.put("index.html", "<html></html>\n")
    world_any.put(name, "export SECRET=hunter2\n")
    result = world_any.run("sync", "--json")
    assert result.code == 0, result.err
    assert world_any.remote() == {"index.html": b"<html></html>\n"}


def test_copies_of_a_config_with_any_name_next_to_it_are_never_uploaded(world310: World) -> None:
    world = world310
    world.put("index.html", "<html></html>\n")
    config = world.folder / "lab.yaml"
    config.write_text(config_text(world), encoding="utf-8")
    for copy in ("lab.yaml.bak", "lab.yaml.orig", "lab.yaml-2024-05-01"):
        world.put(copy, config_text(world))
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["-c", str(config), "sync"], environ={"JATOS_TOKEN": world.token}, stdout=out, stderr=err
    )
    assert code == 0, out.getvalue() + err.getvalue()
    assert world.remote() == {"index.html": b"<html></html>\n"}


def test_init_force_keeps_its_backup_of_a_config_inside_the_folder_off_the_server(
    world310: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = world310
    monkeypatch.setenv("JATOS_SYNC_STATE_DIR", str(world.state_dir))  # init writes no state_dir
    world.put("index.html", "<html></html>\n")
    config = world.folder / "jatos-sync.yaml"
    argv = ["-c", str(config), "init", "--url", world.server.url, "--study", world.study_ref]
    env = {"JATOS_TOKEN": world.token}
    for extra in ([], ["--force"]):
        out, err = io.StringIO(), io.StringIO()
        code = main(
            [*argv, "--folder", str(world.folder), *extra], environ=env, stdout=out, stderr=err
        )
        assert code == 0, out.getvalue() + err.getvalue()
    assert (world.folder / "jatos-sync.yaml.bak").exists()
    out, err = io.StringIO(), io.StringIO()
    assert main(["-c", str(config), "sync"], environ=env, stdout=out, stderr=err) == 0
    assert world.remote() == {"index.html": b"<html></html>\n"}


# ---------------------------------------------------------------- state outside the folder


@pytest.mark.parametrize("spelled", ["state_dir", "folder"])
def test_a_state_directory_inside_the_folder_through_a_symlink_is_refused(
    world310: World, tmp_path: Path, spelled: str
) -> None:
    world = world310
    world.put("index.html", "<html></html>\n")
    alias = tmp_path / "alias"
    os.symlink(world.folder, alias)
    text = config_text(world)
    if spelled == "state_dir":
        state = alias / ".jatos-state"
    else:
        state = world.folder / ".jatos-state"
        text = text.replace(f"folder: {world.folder}\n", f"folder: {alias}\n")
    text = text.replace(f"state_dir: {world.state_dir}\n", f"state_dir: {state}\n")
    world.config_path.write_text(text, encoding="utf-8")
    for command in (["sync", "--json"], ["pull", "--json", "--force"]):
        result = world.run(*command)
        assert result.code == 2, result.out + result.err
        assert "state_dir" in result.err and "symbolic link" in result.err
        assert not (world.folder / ".jatos-state").exists()
    assert world.remote() == {}


def test_a_state_directory_from_the_environment_inside_the_folder_is_refused(
    world310: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = world310
    world.put("index.html", "<html></html>\n")
    alias = tmp_path / "alias"
    os.symlink(world.folder, alias)
    text = config_text(world).replace(f"state_dir: {world.state_dir}\n", "")
    world.config_path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("JATOS_SYNC_STATE_DIR", str(alias / "state"))
    result = world.run("sync")
    assert result.code == 2, result.out + result.err
    assert "JATOS_SYNC_STATE_DIR" in result.err
    assert world.remote() == {}


def test_ensure_outside_compares_resolved_paths(tmp_path: Path) -> None:
    from jatos_sync.errors import ConfigError
    from jatos_sync.state import StateStore

    study, elsewhere = tmp_path / "study", tmp_path / "elsewhere"
    study.mkdir()
    elsewhere.mkdir()
    os.symlink(study, tmp_path / "to-study")
    os.symlink(elsewhere, study / "to-elsewhere")
    StateStore(study / "to-elsewhere" / "state").ensure_outside(study)  # lies outside
    StateStore(tmp_path / "study-state").ensure_outside(tmp_path / "to-study")
    for root, folder in [
        (tmp_path / "to-study" / "state", study),
        (study / "state", tmp_path / "to-study"),
        (tmp_path / "to-study", study),
        (tmp_path / "to-study" / ".." / "study" / "x", study),
    ]:
        with pytest.raises(ConfigError, match="inside the synced folder"):
            StateStore(root).ensure_outside(folder)


# ---------------------------------------------------------------- participant data


def test_psychopy_data_next_to_an_experiment_in_a_subfolder_is_never_uploaded(
    world_any: World,
) -> None:
    world = world_any
    world.put("index.html", "<html></html>\n")
    world.put("tasks/stroop/stroop.psyexp", "<PsychoPy2experiment/>\n")
    world.put("tasks/stroop/data/P01_stroop_2024-05-06.csv", "participant,rt\nP01,512\n")
    world.put("tasks/stroop/data/P01_stroop_2024-05-06.log", "P01 started\n")
    world.put("tasks/stroop/stimuli/data/words.csv", "word\nred\n")
    result = world.run("sync", "--json")
    assert result.code == 0, result.err
    assert sorted(world.remote()) == [
        "index.html",
        "tasks/stroop/stimuli/data/words.csv",
        "tasks/stroop/stroop.psyexp",
    ]


def test_participant_data_on_the_server_is_not_deleted_once_it_is_ignored(
    world_any: World,
) -> None:
    """An experiment added later makes its `data/` ignored; a server copy synced before is
    then never deleted, like every ignored server file (docs/safety.md, rule 8)."""
    world = world_any
    world.put("index.html", "<html></html>\n")
    world.put("exp/data/stimuli.csv", "word\nred\n")
    assert world.run("sync").code == 0
    assert "exp/data/stimuli.csv" in world.remote()
    world.put("exp/Exp.PSYEXP", "<PsychoPy2experiment/>\n")
    (world.folder / "exp" / "data" / "stimuli.csv").unlink()
    world.put("exp/data/P01.csv", "participant\nP01\n")
    result = world.run("sync", "--json")
    assert result.code == 0, result.err
    assert result.json["mappings"][0]["deleted"] == []
    assert sorted(world.remote()) == ["exp/Exp.PSYEXP", "exp/data/stimuli.csv", "index.html"]


def test_the_watcher_drops_participant_data_once_an_experiment_appears(tmp_path: Path) -> None:
    from watchdog.events import FileCreatedEvent, FileModifiedEvent

    from jatos_sync.debounce import Change
    from jatos_sync.model import RelPath
    from tests.test_watch import Rig

    rig = Rig(tmp_path)
    rig.watcher.start()
    try:
        (rig.folder / "tasks" / "stroop" / "data").mkdir(parents=True)
        csv = rig.p("tasks/stroop/data/P01.csv")
        assert rig.emit(FileCreatedEvent(csv)) == [
            Change("touch", RelPath("tasks/stroop/data/P01.csv"))
        ]
        (rig.folder / "tasks" / "stroop" / "stroop.psyexp").write_text("<PsychoPy/>")
        created = rig.emit(FileCreatedEvent(rig.p("tasks/stroop/stroop.psyexp")))
        assert created == [Change("touch", RelPath("tasks/stroop/stroop.psyexp"))]
        assert rig.emit(FileModifiedEvent(csv), FileCreatedEvent(csv + ".bak")) == []
        assert rig.emit(FileCreatedEvent(rig.p("tasks/stroop/data/P02.csv"))) == []
    finally:
        rig.watcher.stop()


# ---------------------------------------------------------------- TLS


@pytest.fixture
def sent_verify(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The `verify` setting of every request the CLI's client really sends."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    used: list[object] = []
    real_send = requests.adapters.HTTPAdapter.send

    def send(self: requests.adapters.HTTPAdapter, request: Any, **kwargs: Any) -> Any:
        used.append(kwargs.get("verify"))
        return real_send(self, request, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    return used


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("", True),
        ("  verify_tls: true\n", True),
        ("  verify_tls: false\n", False),
        ("  ca_bundle: {ca}\n", "{ca}"),
    ],
    ids=["default", "true", "false", "ca_bundle"],
)
def test_tls_verification_reaches_the_session(
    world310: World, sent_verify: list[object], extra: str, expected: object
) -> None:
    ca = world310.config_path.parent / "lab-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    world310.write_config(server_extra=extra.format(ca=ca))
    result = world310.run("check")
    assert result.code == 0, result.err
    wanted = expected.format(ca=ca) if isinstance(expected, str) else expected
    assert sent_verify and set(sent_verify) == {wanted}


def test_the_configured_ca_bundle_wins_over_requests_ca_bundle(
    world310: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests merges $REQUESTS_CA_BUNDLE into every request, over the session's `verify`:
    a configured ca_bundle (or verify_tls: false) is silently replaced by the environment's."""
    used: list[object] = []
    real_send = requests.adapters.HTTPAdapter.send

    def send(self: requests.adapters.HTTPAdapter, request: Any, **kwargs: Any) -> Any:
        used.append(kwargs.get("verify"))
        return real_send(self, request, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    ca = world310.config_path.parent / "lab-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(world310.config_path.parent / "other.pem"))
    world310.write_config(server_extra=f"  ca_bundle: {ca}\n")
    result = world310.run("check")
    assert result.code == 0, result.err
    assert used and set(used) == {str(ca)}


def test_a_client_verifies_tls_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    token = load_token_for_tests()
    for kwargs, expected in (
        ({}, True),
        ({"verify": False}, False),
        ({"verify": "/ca.pem"}, "/ca.pem"),
    ):
        with (
            requests_mock.Mocker() as m,
            JatosClient("https://jatos.example.org", token, **kwargs) as client,
        ):
            m.get(
                "https://jatos.example.org/jatos/api/v1/admin/token",
                json={"apiVersion": "1.1.0", "data": {"name": "t"}},
            )
            client.token_info()
            assert m.request_history[0].verify == expected


def load_token_for_tests() -> Any:
    from jatos_sync.credentials import check_token_format

    return check_token_format(make_token(), source="test")


def _events(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


@pytest.mark.parametrize(
    "url",
    ["http://jatos.invalid", "http://jatos.invalid:9000/prefix", "http://127.example.invalid"],
)
def test_plain_http_to_a_remote_host_is_warned_about(world310: World, url: str) -> None:
    world310.config_path.write_text(config_text(world310, url=url))
    result = world310.run("sync")
    assert result.code == 5, result.err
    warnings = [e for e in _events(result.err) if e["event"] == "insecure_url"]
    assert [w["level"] for w in warnings] == ["warning"], result.err


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "https"])
def test_no_warning_for_loopback_or_https(world310: World, host: str) -> None:
    port = world310.server.port
    url = "https://jatos.invalid" if host == "https" else f"http://{host}:{port}"
    world310.config_path.write_text(config_text(world310, url=url))
    result = world310.run("check")
    assert result.code == (5 if host == "https" else 0), result.err
    assert not [e for e in _events(result.err) if e["event"] == "insecure_url"]


# ---------------------------------------------------------------- symlinks


def test_symlink_loops_are_skipped_and_the_sync_completes(world_any: World) -> None:
    folder = world_any.folder
    world_any.put("index.html", "<html></html>\n")
    os.symlink("self", folder / "self")
    os.symlink("b", folder / "a")
    os.symlink("a", folder / "b")
    (folder / "sub").mkdir()
    os.symlink("..", folder / "sub" / "up")
    world_any.put("sub/data.csv", "x\n")
    result = world_any.run("sync", "--json")
    assert result.code == 0, result.err
    skipped = {p["path"]: p["reason"] for p in result.json["mappings"][0]["skipped"]}
    assert skipped == dict.fromkeys(["a", "b", "self", "sub/up"], "symlink loop")
    assert world_any.remote() == {"index.html": b"<html></html>\n", "sub/data.csv": b"x\n"}
    again = world_any.run("sync", "--json")
    assert again.code == 0 and again.json["mappings"][0]["uploaded"] == []


def test_symlinks_to_files_outside_the_folder_are_followed(
    world_any: World, tmp_path: Path
) -> None:
    shared = tmp_path / "shared-stimuli"
    (shared / "faces").mkdir(parents=True)
    (shared / "style.css").write_bytes(b"body { margin: 0; }\n")
    (shared / "faces" / "f1.png").write_bytes(b"\x89PNG face")
    (shared / "secret.txt").write_bytes(b"not for the study\n")
    folder = world_any.folder
    world_any.put("index.html", "<html></html>\n")
    os.symlink(shared / "style.css", folder / "style.css")
    os.symlink(shared / "faces", folder / "faces")
    os.symlink(shared / "secret.txt", folder / "secret.txt")
    os.symlink(tmp_path / "nowhere", folder / "dangling")
    world_any.put(".jatosignore", "secret.txt\n")  # how a user keeps a linked file off
    result = world_any.run("sync", "--json")
    assert result.code == 0, result.err
    assert world_any.remote() == {
        "index.html": b"<html></html>\n",
        "style.css": b"body { margin: 0; }\n",
        "faces/f1.png": b"\x89PNG face",
    }
    skipped = {p["path"]: p["reason"] for p in result.json["mappings"][0]["skipped"]}
    assert skipped == {"dangling": "broken symbolic link"}


# ---------------------------------------------------------------- private state


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_state_and_backups_are_private(world_any: World) -> None:
    world, server = world_any, world_any.server
    # Files on the server that this tool never put there: the first sync saves them first,
    # before the state directory exists.
    server.put_file(world.study, "index.html", b"<html>the colleague's</html>\n")
    server.put_file(world.study, "img/logo.png", b"GUI upload")
    world.put("index.html", "<html>mine</html>\n")
    world.put("img/logo.png", b"\x89PNG mine")
    with umask(0o022):  # a usual umask: new directories 0755, files 0644 unless chosen
        first = world.run("sync", "--yes", "--json")  # a first sync over foreign files
        assert first.code == 0, first.err
        assert sorted(first.json["mappings"][0]["backed_up"]) == ["img/logo.png", "index.html"]
        server.put_file(world.study, "img/logo.png", b"edited again in the GUI")
        world.put("img/logo.png", b"\x89PNG mine v2")
        second = world.run("sync", "--json")
        assert second.json["mappings"][0]["backed_up"] == ["img/logo.png"]
    modes = {
        str(p.relative_to(world.state_dir.parent)): stat.S_IMODE(p.stat().st_mode)
        for p in [world.state_dir, *world.state_dir.rglob("*")]
    }
    wrong = {
        path: f"{mode:04o}"
        for path, mode in modes.items()
        if mode != (0o700 if (world.state_dir.parent / path).is_dir() else 0o600)
    }
    assert not wrong, f"not private: {wrong}"


# ---------------------------------------------------------------- code review by grep

PACKAGE = Path(jatos_sync.__file__).parent
FORBIDDEN: Sequence[tuple[str, str]] = (
    (r"yaml\.load\(", "yaml.load() can build arbitrary objects"),
    (r"yaml\.(unsafe_load|full_load|load_all)\(", "an unsafe YAML loader"),
    (r"Loader\s*=\s*yaml\.Loader\b", "the unsafe YAML loader"),
    (r"\bUnsafeLoader\b", "the unsafe YAML loader"),
    (r"\bFullLoader\b", "the full YAML loader"),
    (r"shell\s*=\s*True", "a shell"),
    (r"\bos\.system\(", "a shell"),
    (r"\bos\.popen\(", "a shell"),
    (r"\bos\.exec\w*\(", "replacing the process"),
    (r"(?<![\w.])eval\(", "eval"),
    (r"(?<![\w.])exec\(", "exec"),
    (r"\bpickle\b", "pickle"),
    (r"\bmarshal\b", "marshal"),
)


def package_sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_package_never_loads_yaml_unsafely_or_runs_a_shell() -> None:
    sources = package_sources()
    assert len(sources) > 10
    found = []
    for path in sources:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for pattern, why in FORBIDDEN:
                if re.search(pattern, line):
                    found.append(f"{path.relative_to(PACKAGE)}:{number}: {why}: {line.strip()}")
    assert not found, "\n".join(found)


def test_every_yaml_call_is_a_safe_one() -> None:
    calls: list[tuple[str, int, str, dict[str, str]]] = []
    for path in package_sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "yaml"
            ):
                keywords = {str(k.arg): ast.unparse(k.value) for k in node.keywords}
                calls.append((path.name, node.lineno, node.func.attr, keywords))
    assert calls, "the package reads YAML somewhere"
    for name, line, function, keywords in calls:
        where = f"{name}:{line}: yaml.{function}"
        assert function in ("safe_load", "safe_dump", "compose"), where
        if function == "compose":
            assert keywords.get("Loader") == "yaml.SafeLoader", where


def test_the_stand_in_server_listens_on_loopback_by_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import threading

    from jatos_sync.testing.__main__ import main as serve

    stop = threading.Event()
    stop.set()  # serve, print the line, and stop at once
    assert serve(["serve"], stop=stop) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["url"].startswith("http://127.0.0.1:")
    assert line["token"].startswith("jap_"), "a test server prints its test token by design"
