"""The unit files in systemd/: `systemd-analyze verify` accepts each, and each carries the
settings the README and issue 4 promise (notify, watchdog, credentials, state, hardening).

`systemd-analyze verify` checks that every Exec*= program exists and is executable, so each
unit is verified as a copy in a temporary directory whose ExecStart= program is a stub
script (for the user unit: a stub at %h/.local/bin/jatos-sync under a temporary $HOME, so
the specifier is checked too). Other programs (/bin/kill) are replaced only when this
machine lacks them. Warnings ("Unknown key ...") do not change verify's exit code, so any
output line that names the unit counts as a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SYSTEMD_DIR = Path(__file__).resolve().parent.parent / "systemd"
SYSTEM_UNIT = SYSTEMD_DIR / "jatos-sync.service"
TEMPLATE_UNIT = SYSTEMD_DIR / "jatos-sync@.service"
USER_UNIT = SYSTEMD_DIR / "user" / "jatos-sync.service"
ALL_UNITS = [SYSTEM_UNIT, TEMPLATE_UNIT, USER_UNIT]
UNIT_IDS = ["system", "template", "user"]

VENV_PROGRAM = "/opt/jatos-sync/venv/bin/jatos-sync"
USER_PROGRAM = "%h/.local/bin/jatos-sync"

# ---------------------------------------------------------------------- a unit-file reader

Unit = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Unit:
    """systemd's unit syntax: [Section], Key=Value, repeated keys accumulate, `#`/`;`
    comments, a trailing backslash continues the line. (configparser rejects repeats.)"""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"setting outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a Key=Value line: {line!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def load(path: Path) -> Unit:
    return parse_unit(path.read_text(encoding="utf-8"))


def one(unit: Unit, section: str, key: str) -> str:
    values = unit.get(section, {}).get(key, [])
    assert len(values) == 1, f"[{section}] {key}= should be set once, is {values!r}"
    return values[0]


def test_parse_unit_handles_repeats_comments_and_continuations() -> None:
    unit = parse_unit(
        "# comment\n[Service]\n; other comment\nA=1\nA=2\nB=x \\\n  y\n\n[Install]\nC=\n"
    )
    assert unit == {"Service": {"A": ["1", "2"], "B": ["x y"]}, "Install": {"C": [""]}}


# ---------------------------------------------------------------------- systemd-analyze verify


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    if not sys.platform.startswith("linux"):
        pytest.skip("systemd units are Linux-only")
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail(
            "systemd-analyze is not installed, so the unit files in systemd/ cannot be "
            "verified. Install it with `apt-get install systemd` (Debian/Ubuntu; .ci/run "
            "does this) or your distribution's systemd package."
        )
    return found


@dataclass
class Verified:
    returncode: int
    output: str
    problems: list[str]


STUB = "#!/bin/sh\nexit 0\n"


def _stub(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STUB, encoding="utf-8")
    path.chmod(0o755)
    return path


def _with_stub_programs(text: str, stub: Path, *, keep_exec_start: bool) -> str:
    """Point ExecStart= (unless kept) and any program missing here at `stub`."""
    out = []
    for line in text.splitlines():
        match = re.match(r"^(Exec\w+)=(\S+)(.*)$", line)
        if match:
            key, program, rest = match.groups()
            replace = (key == "ExecStart" and not keep_exec_start) or (
                program.startswith("/") and not os.access(program, os.X_OK)
            )
            if replace:
                line = f"{key}={stub}{rest}"
        out.append(line)
    return "\n".join(out) + "\n"


def verify(
    systemd_analyze: str,
    unit_path: Path,
    tmp_path: Path,
    *,
    instance: str | None = None,
    edit: str = "",
) -> Verified:
    """Verify a copy of `unit_path` (with `edit` appended to its [Service] section)."""
    user = unit_path == USER_UNIT
    unit_dir = tmp_path / "units"
    unit_dir.mkdir(exist_ok=True)
    home = tmp_path / "home"
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    stub = _stub(tmp_path / "bin" / "jatos-sync")
    if user:
        _stub(home / ".local" / "bin" / "jatos-sync")  # ExecStart=%h/.local/bin/jatos-sync
    text = _with_stub_programs(unit_path.read_text(encoding="utf-8"), stub, keep_exec_start=user)
    if edit:
        text = text.replace("[Install]", edit + "\n[Install]", 1)
    copy = unit_dir / unit_path.name
    copy.write_text(text, encoding="utf-8")
    target = unit_dir / unit_path.name.replace("@.", f"@{instance}.") if instance else copy

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime),  # a --user manager refuses to start without it
        "SYSTEMD_COLORS": "0",
        "SYSTEMD_PAGER": "",
        "LC_ALL": "C",
    }
    command = [systemd_analyze, *(["--user"] if user else []), "verify", "--man=no", str(target)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    output = done.stdout + done.stderr
    # Only lines about our unit count; a container may add unrelated noise.
    problems = [
        line for line in output.splitlines() if "jatos-sync" in line or str(tmp_path) in line
    ]
    return Verified(done.returncode, output, problems)


@pytest.mark.parametrize("unit_path", ALL_UNITS, ids=UNIT_IDS)
def test_systemd_analyze_verify_accepts_the_unit(
    systemd_analyze: str, unit_path: Path, tmp_path: Path
) -> None:
    result = verify(systemd_analyze, unit_path, tmp_path)
    assert result.returncode == 0, result.output
    assert result.problems == [], result.output


def test_systemd_analyze_verify_accepts_a_template_instance(
    systemd_analyze: str, tmp_path: Path
) -> None:
    result = verify(systemd_analyze, TEMPLATE_UNIT, tmp_path, instance="lab-a")
    assert result.returncode == 0, result.output
    assert result.problems == [], result.output


@pytest.mark.parametrize("unit_path", ALL_UNITS, ids=UNIT_IDS)
def test_verify_would_catch_a_broken_unit(
    systemd_analyze: str, unit_path: Path, tmp_path: Path
) -> None:
    # The check above can fail: an unknown key and a bad value are reported.
    result = verify(systemd_analyze, unit_path, tmp_path, edit="NoSuchSetting=1\nRestartSec=soon")
    assert any("NoSuchSetting" in line for line in result.problems), result.output
    assert any("soon" in line for line in result.problems), result.output


def test_verify_would_catch_a_missing_program(systemd_analyze: str, tmp_path: Path) -> None:
    text = SYSTEM_UNIT.read_text(encoding="utf-8").replace(VENV_PROGRAM, "/nonexistent/js")
    if not os.access("/bin/kill", os.X_OK):
        text = text.replace("/bin/kill", str(_stub(tmp_path / "bin" / "kill")))
    units = tmp_path / "units"
    units.mkdir()
    copy = units / "jatos-sync.service"
    copy.write_text(text, encoding="utf-8")
    done = subprocess.run(
        [systemd_analyze, "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SYSTEMD_COLORS": "0"},
    )
    assert done.returncode != 0
    assert "/nonexistent/js" in done.stdout + done.stderr


# ---------------------------------------------------------------------- promised settings


COMMON_SERVICE = {
    "Type": "notify",
    "NotifyAccess": "main",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "WatchdogSec": "60",
    "TimeoutStopSec": "20",
    "Restart": "on-failure",
    "RestartSec": "5",
    "UMask": "0077",
    "NoNewPrivileges": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
}

SYSTEM_HARDENING = {
    "DynamicUser": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "read-only",
    "PrivateTmp": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "StateDirectoryMode": "0700",
}


@pytest.mark.parametrize("unit_path", ALL_UNITS, ids=UNIT_IDS)
def test_every_unit_is_a_notify_service_with_watchdog_and_no_restart_loop(
    unit_path: Path,
) -> None:
    unit = load(unit_path)
    for key, value in COMMON_SERVICE.items():
        assert one(unit, "Service", key) == value, key
    # Exit 2 (configuration) and 3 (token rejected) must not restart (README, "Exit codes").
    codes = one(unit, "Service", "RestartPreventExitStatus").split()
    assert {"2", "3"} <= set(codes)


@pytest.mark.parametrize(
    ("unit_path", "program", "config"),
    [
        (SYSTEM_UNIT, VENV_PROGRAM, "/etc/jatos-sync/jatos-sync.yaml"),
        (TEMPLATE_UNIT, VENV_PROGRAM, "/etc/jatos-sync/%i.yaml"),
        (USER_UNIT, USER_PROGRAM, "%h/.config/jatos-sync/jatos-sync.yaml"),
    ],
    ids=UNIT_IDS,
)
def test_exec_start_runs_watch_with_the_documented_config(
    unit_path: Path, program: str, config: str
) -> None:
    argv = one(load(unit_path), "Service", "ExecStart").split()
    assert argv == [program, "-c", config, "watch"]


@pytest.mark.parametrize(
    ("unit_path", "credential", "state"),
    [
        (SYSTEM_UNIT, "jatos-token:/etc/jatos-sync/token", "jatos-sync"),
        (TEMPLATE_UNIT, "jatos-token:/etc/jatos-sync/%i.token", "jatos-sync/%i"),
    ],
    ids=UNIT_IDS[:2],
)
def test_system_units_load_the_token_credential_keep_state_and_are_hardened(
    unit_path: Path, credential: str, state: str
) -> None:
    unit = load(unit_path)
    # credentials.py reads $CREDENTIALS_DIRECTORY/jatos-token (README, "Configuration").
    assert one(unit, "Service", "LoadCredential") == credential
    # state.py reads $STATE_DIRECTORY, which StateDirectory= sets.
    assert one(unit, "Service", "StateDirectory") == state
    for key, value in SYSTEM_HARDENING.items():
        assert one(unit, "Service", key) == value, key
    assert one(unit, "Install", "WantedBy") == "multi-user.target"
    assert one(unit, "Unit", "After") == "network-online.target"
    assert one(unit, "Unit", "Wants") == "network-online.target"
    text = unit_path.read_text(encoding="utf-8")
    # Documented examples for exposing only the synced folders.
    assert re.search(r"^#BindReadOnlyPaths=/", text, re.MULTILINE)
    assert re.search(r"^#ReadOnlyPaths=/", text, re.MULTILINE)


def test_the_template_differs_from_the_system_unit_only_per_instance() -> None:
    system, template = load(SYSTEM_UNIT), load(TEMPLATE_UNIT)
    per_instance = {"ExecStart", "LoadCredential", "StateDirectory"}
    assert system.keys() == template.keys()
    for section, settings in system.items():
        other = template[section]
        assert settings.keys() == other.keys(), section
        for key, values in settings.items():
            if key in per_instance or (section, key) == ("Unit", "Description"):
                assert "%i" in " ".join(other[key]), key
            else:
                assert other[key] == values, (section, key)


def test_user_unit_runs_unprivileged_with_the_programs_own_state_dir() -> None:
    unit = load(USER_UNIT)
    assert one(unit, "Install", "WantedBy") == "default.target"
    service = unit["Service"]
    # Neither exists or makes sense in a user manager.
    assert "DynamicUser" not in service
    assert "LoadCredential" not in service  # the token comes from token_file
    # Old user managers put StateDirectory= into ~/.config; state.py's default
    # (~/.local/state/jatos-sync) is used instead.
    assert "StateDirectory" not in service
    # Mount-namespace options need privileges a user manager may not have.
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices"):
        assert key not in service, key
