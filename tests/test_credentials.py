"""Tests for jatos_sync.credentials: the token's format, its sources in order, secret files,
and the rule that keeps the configuration and the token file out of synced folders."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from jatos_sync.config import MappingConfig, ServerConfig
from jatos_sync.credentials import Token, check_token_format, keep_out, load_token
from jatos_sync.errors import ConfigError
from jatos_sync.testing import make_token  # the stand-in's own checksum, not ours

JATOS_ENV = "JATOS_TOKEN"  # the default variable
LAB_ENV = "LAB_TOKEN"

# ------------------------------------------------------------------------------------------
# check_token_format
# ------------------------------------------------------------------------------------------


def test_a_well_formed_token_passes_and_whitespace_is_stripped() -> None:
    token = make_token()
    assert check_token_format(f"  {token}\n", source="$JATOS_TOKEN").reveal() == token


@pytest.mark.parametrize(
    ("mangle", "fragment"),
    [
        (lambda t: "", "it is empty"),
        (lambda t: "   \n", "it is empty"),
        (lambda t: "Bearer " + t, "starts with 'Bearer '"),
        (lambda t: "jbp_" + t[4:], "does not start with jap_"),
        (lambda t: t[:-1], "it has 40 characters instead of 41"),
        (lambda t: t + "a", "it has 42 characters instead of 41"),
        (lambda t: t[:10] + "-" + t[11:], "characters other than letters and digits"),
        (lambda t: t[:10] + "é" + t[11:], "characters other than letters and digits"),
        (
            lambda t: t[:-6] + t[-6:].upper() if t[-6:] != t[-6:].upper() else t[:-1] + "x",
            "checksum does not match",
        ),
        (lambda t: t[:5] + ("A" if t[5] != "A" else "B") + t[6:], "mistyped or truncated"),
    ],
)
def test_malformed_tokens_are_explained_without_echoing(
    mangle: Callable[[str], str], fragment: str
) -> None:
    token = make_token()
    value = mangle(token)
    with pytest.raises(ConfigError) as info:
        check_token_format(value, source="token file /x/y")
    message = str(info.value)
    assert message.startswith("token file /x/y: not a valid JATOS API token: ")
    assert fragment in message
    assert "copy it again from JATOS: your user menu → API tokens" in message
    assert token[4:14] not in message
    assert token[-6:] not in message


# ------------------------------------------------------------------------------------------
# load_token: order of sources
# ------------------------------------------------------------------------------------------


def server_config(**changes: object) -> ServerConfig:
    base: dict[str, object] = {
        "url": "http://h",
        "token_env": JATOS_ENV,
        "token_file": None,
        "inline_token": None,
        "timeout_s": 30.0,
        "retries": 4,
        "concurrency": 4,
        "verify_tls": True,
        "ca_bundle": None,
    }
    base.update(changes)
    return ServerConfig(**base)  # type: ignore[arg-type]


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, str]:
    return {name: make_token() for name in ("inline", "file", "credential", "env")}


def test_token_sources_in_order(tmp_path: Path, sources: dict[str, str]) -> None:
    token_file = write_private(tmp_path / "token", sources["file"] + "\n")
    creds = tmp_path / "creds"
    write_private(creds / "jatos-token", sources["credential"])
    environ = {"CREDENTIALS_DIRECTORY": str(creds), "JATOS_TOKEN": sources["env"]}

    everything = server_config(inline_token=Token(sources["inline"]), token_file=token_file)
    assert load_token(everything, environ=environ).reveal() == sources["inline"]
    assert (
        load_token(server_config(token_file=token_file), environ=environ).reveal()
        == sources["file"]
    )
    assert load_token(server_config(), environ=environ).reveal() == sources["credential"]
    without_credential = {"JATOS_TOKEN": sources["env"]}
    assert load_token(server_config(), environ=without_credential).reveal() == sources["env"]


def test_credentials_directory_without_our_credential_falls_through_to_the_env_var(
    tmp_path: Path,
) -> None:
    token = make_token()
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path), LAB_ENV: token}
    assert load_token(server_config(token_env=LAB_ENV), environ=environ).reveal() == token


def test_token_env_names_the_variable() -> None:
    token = make_token()
    environ = {"JATOS_TOKEN": make_token(), LAB_ENV: token}
    assert load_token(server_config(token_env=LAB_ENV), environ=environ).reveal() == token


def test_no_token_anywhere_explains_the_three_ways() -> None:
    with pytest.raises(ConfigError) as info:
        load_token(server_config(token_env=LAB_ENV), environ={})
    message = str(info.value)
    assert "export LAB_TOKEN=" in message
    assert "token_file" in message
    assert "LoadCredential=jatos-token:" in message


def test_bad_env_token_names_the_variable_and_does_not_echo() -> None:
    token = make_token()
    with pytest.raises(ConfigError) as info:
        load_token(server_config(), environ={"JATOS_TOKEN": token[:-2]})
    assert str(info.value).startswith("$JATOS_TOKEN: not a valid JATOS API token")
    assert token[4:-2] not in str(info.value)
    with pytest.raises(ConfigError, match=r"^\$JATOS_TOKEN: .*it is empty"):
        load_token(server_config(), environ={"JATOS_TOKEN": ""})


def test_a_broken_token_file_is_an_error_not_a_fall_through(tmp_path: Path) -> None:
    environ = {"JATOS_TOKEN": make_token()}
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=f"token file {missing} does not exist"):
        load_token(server_config(token_file=missing), environ=environ)
    empty = write_private(tmp_path / "empty", "\n")
    with pytest.raises(ConfigError, match=f"token file {empty} is empty"):
        load_token(server_config(token_file=empty), environ=environ)
    token = make_token()
    wrong = write_private(tmp_path / "wrong", token[:30])
    with pytest.raises(ConfigError, match=f"token file {wrong}: not a valid JATOS API token"):
        load_token(server_config(token_file=wrong), environ=environ)
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe")
    binary.chmod(0o600)
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_token(server_config(token_file=binary), environ=environ)
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_token(server_config(token_file=tmp_path), environ=environ)
    big = write_private(tmp_path / "big", "x" * 10_000)
    with pytest.raises(ConfigError, match="too large"):
        load_token(server_config(token_file=big), environ=environ)


@pytest.mark.skipif(os.name != "posix", reason="mode bits are POSIX")
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_a_token_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    token = make_token()
    path = write_private(tmp_path / "token", token, mode=mode)
    with pytest.raises(ConfigError) as info:
        load_token(server_config(token_file=path), environ={})
    message = str(info.value)
    assert f"chmod 600 {path}" in message
    assert f"mode {mode:04o}" in message
    assert token[4:] not in message


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX, not root")
def test_an_unreadable_token_file_is_named(tmp_path: Path) -> None:
    path = write_private(tmp_path / "token", make_token(), mode=0o000)
    try:
        with pytest.raises(ConfigError, match=f"token file {path} cannot be read"):
            load_token(server_config(token_file=path), environ={})
    finally:
        path.chmod(0o600)


def test_a_broken_systemd_credential_is_named(tmp_path: Path) -> None:
    write_private(tmp_path / "jatos-token", "not-a-token")
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path), "JATOS_TOKEN": make_token()}
    with pytest.raises(ConfigError, match=r"^the systemd credential jatos-token: not a valid"):
        load_token(server_config(), environ=environ)


def write_private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


# ------------------------------------------------------------------------------------------
# keep_out: secrets inside a synced folder are never synced
# ------------------------------------------------------------------------------------------


def mapping_for(folder: Path) -> MappingConfig:
    return MappingConfig(
        name="m",
        folder=folder,
        study="1",
        ignore=("*.psd",),
        delete=True,
        backup=True,
        max_delete=500,
        max_delete_percent=50.0,
        line=1,
    )


def test_keep_out_adds_an_anchored_literal_rule_for_each_secret_inside_the_folder(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "exp"
    (folder / "sub dir").mkdir(parents=True)
    secrets = [folder / "jatos-sync.yaml", folder / "sub dir" / "tok[1]", tmp_path / "outside"]
    kept = keep_out(mapping_for(folder), secrets)
    assert kept.ignore == ("*.psd", "/jatos-sync.yaml*", "/sub\\ dir/tok\\[1\\]*")


def test_keep_out_leaves_a_mapping_without_secrets_inside_unchanged(tmp_path: Path) -> None:
    mapping = mapping_for(tmp_path / "exp")
    assert keep_out(mapping, [tmp_path / "jatos-sync.yaml"]) is mapping
