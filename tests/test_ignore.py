from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pathspec import GitIgnoreSpec

from jatos_sync.errors import ConfigError
from jatos_sync.ignore import (
    BUILTIN_PATTERNS,
    SERVER_TEMP_RE,
    IgnoreRules,
    is_server_temp,
    literal_pattern,
    pattern_problem,
)
from jatos_sync.model import RelPath
from tests.conftest import World

SERVER_TEMP = ".logo.png.tmp-123e4567-e89b-12d3-a456-426614174000"

IGNORED_FILES = [
    # version control, also nested and as the .git file of a worktree
    ".git/config",
    ".git/objects/ab/cdef",
    "sub/.git/HEAD",
    "sub/.git",
    ".hg/store/data",
    ".svn/entries",
    ".bzr/branch-format",
    "CVS/Entries",
    "lib/CVS/Root",
    # OS junk
    ".DS_Store",
    "img/.DS_Store",
    "._logo.png",
    "Thumbs.db",
    "img/ehthumbs.db",
    "desktop.ini",
    ".Spotlight-V100/Store-V2/x",
    ".Trashes/501/a.png",
    ".fseventsd/0000",
    "$RECYCLE.BIN/S-1-5/x.png",
    ".Trash-1000/files/a.png",
    ".nfs000000000012abcd00000001",
    ".fuse_hidden0000000100000001",
    # vim
    "4913",
    "js/4913",
    "5036",
    "5159",
    "6020",
    ".index.html.swp",
    "js/.experiment.js.swo",
    ".experiment.js.swn",
    "index.html.swp",
    "page.swx",
    "file~",
    "js/experiment.js~",
    "index.html.~1~",
    ".index.html.un~",
    # emacs
    "#file#",
    "js/#experiment.js#",
    ".#file",
    "js/.#experiment.js",
    # JetBrains safe write
    "x___jb_tmp___",
    "js/experiment.js___jb_tmp___",
    "x___jb_old___",
    # other editors and IDE metadata
    "style.css.kate-swp",
    ".goutputstream-AB12CD",
    ".idea/workspace.xml",
    ".vscode/settings.json",
    # office lock files
    ".~lock.list.ods#",
    "~$results.xlsx",
    # partial downloads
    "video.mp4.crdownload",
    "video.mp4.part",
    "video.mp4.download",
    # the tool's own file, Python caches, PsychoPy results
    ".jatosignore",
    "__pycache__/x.cpython-311.pyc",
    "helper.pyc",
    "run.psydat",
    ".env",
    "build/.env.production",
    "data/run.psydat",
    # secrets people keep in project folders
    ".envrc",
    "sub/.envrc",
    ".netrc",
    "_netrc",
    ".ssh/id_rsa",
    ".ssh/config",
    "keys/id_ed25519",
    "id_ecdsa",
    "id_dsa",
    ".git-credentials",
    ".npmrc",
    "frontend/.npmrc",
    ".yarnrc.yml",
    ".pypirc",
    ".pgpass",
    ".my.cnf",
    ".docker/config.json",
    ".htpasswd",
    "cert/server.pem",
    "lab.p12",
    "lab.pfx",
    "putty.ppk",
    "app.jks",
    "release.keystore",
    "vault.kdbx",
    ".aws/credentials",
    ".azure/msal_token_cache.json",
    "application_default_credentials.json",
    "client_secret_1234-abc.apps.googleusercontent.com.json",
    "credentials.json",
    "serviceAccountKey.json",
    "service-account-prod.json",
    ".bash_history",
    "scripts/.python_history",
    # copies of this tool's configuration, e.g. the one `init --force` keeps
    "jatos-sync.yaml",
    "jatos-sync.yaml.bak",
    "jatos-sync.yaml.orig",
    "old/jatos-sync.yml.2024-05-01",
    # the server's own temp names (docs/jatos-api.md §9.6)
    SERVER_TEMP,
    f"img/{SERVER_TEMP}",
]

KEPT_FILES = [
    "index.html",
    "img/a b.png",
    "img/logo.svg",
    "4914",
    "49130",
    "stim4913.png",
    "data/stim.csv",
    "js/experiment.js",
    "css/style.css",
    "a.swf",
    ".htaccess",
    "notes.tmp",
    "list#1.csv",
    "a~b.txt",
    "partial.txt",
    "git/readme.txt",
    "stimuli/practice/list 1.csv",
    ".logo.png.tmp-not-a-uuid",
    # names near those of secret files that a study may really serve
    "id_list.csv",
    "tokens.js",
    "credentials.js",
    "js/keys.js",
    "env.js",
    "img/ssh.png",
    "history.html",
    "pem.txt",
    "credentials.json.js",
    "jatos-sync.js",
]


@pytest.fixture
def rules(tmp_path: Path) -> IgnoreRules:
    return IgnoreRules.for_folder(tmp_path)


@pytest.mark.parametrize("path", IGNORED_FILES)
def test_builtin_patterns_ignore_artefact(rules: IgnoreRules, path: str) -> None:
    assert rules.is_ignored(RelPath(path))
    assert rules(RelPath(path))


@pytest.mark.parametrize("path", KEPT_FILES)
def test_builtin_patterns_keep_ordinary_asset(rules: IgnoreRules, path: str) -> None:
    assert not rules.is_ignored(RelPath(path))
    assert not rules(RelPath(path))


@pytest.mark.parametrize("name", [".git", ".svn", "CVS", "__pycache__", ".idea", ".Trashes"])
def test_builtin_directory_patterns_match_the_directory_itself(
    rules: IgnoreRules, name: str
) -> None:
    assert rules.is_ignored(RelPath(name), is_dir=True)
    assert rules.match_entry(f"sub/{name}", is_dir=True)


def test_directory_only_patterns_do_not_match_a_file_of_that_name(rules: IgnoreRules) -> None:
    assert not rules.is_ignored(RelPath("CVS"))
    assert rules.is_ignored(RelPath("CVS"), is_dir=True)


def test_every_builtin_pattern_is_valid() -> None:
    assert [p for p in BUILTIN_PATTERNS if pattern_problem(p) is not None] == []


def test_jatosignore_patterns_apply_with_comments_and_blank_lines(tmp_path: Path) -> None:
    (tmp_path / ".jatosignore").write_text(
        "# drafts are not for participants\n\ndrafts/\n*.psd\r\n/notes.txt\n", encoding="utf-8"
    )
    rules = IgnoreRules.for_folder(tmp_path)
    assert rules.is_ignored(RelPath("drafts/v1/index.html"))
    assert rules.is_ignored(RelPath("drafts"), is_dir=True)
    assert rules.is_ignored(RelPath("img/logo.psd"))
    assert rules.is_ignored(RelPath("notes.txt"))
    assert not rules.is_ignored(RelPath("sub/notes.txt"))  # anchored to the folder
    assert not rules.is_ignored(RelPath("drafts.html"))
    assert not rules.is_ignored(RelPath("# drafts are not for participants"))


def test_jatosignore_with_byte_order_mark_is_read(tmp_path: Path) -> None:
    (tmp_path / ".jatosignore").write_bytes(b"\xef\xbb\xbfsecret.txt\n")
    assert IgnoreRules.for_folder(tmp_path).is_ignored(RelPath("secret.txt"))


def test_mapping_patterns_apply_and_directory_pattern_covers_everything_below(
    tmp_path: Path,
) -> None:
    rules = IgnoreRules.for_folder(tmp_path, ["drafts/", "*.bak"])
    assert rules.is_ignored(RelPath("drafts/a.html"))
    assert rules.is_ignored(RelPath("drafts/deep/er/a.png"))
    assert rules.is_ignored(RelPath("sub/drafts/a.png"))
    assert rules.is_ignored(RelPath("x.bak"))
    assert not rules.is_ignored(RelPath("index.html"))
    assert not rules.is_ignored(RelPath("drafts"))  # a *file* named drafts is kept


def test_mapping_patterns_come_after_jatosignore(tmp_path: Path) -> None:
    (tmp_path / ".jatosignore").write_text("*.csv\n", encoding="utf-8")
    rules = IgnoreRules.for_folder(tmp_path, ["!keep.csv"])
    assert rules.is_ignored(RelPath("other.csv"))
    assert not rules.is_ignored(RelPath("keep.csv"))


def test_user_may_re_include_a_builtin_pattern(tmp_path: Path) -> None:
    rules = IgnoreRules.for_folder(tmp_path, ["!desktop.ini"])
    assert not rules.is_ignored(RelPath("desktop.ini"))


def test_files_below_an_ignored_directory_cannot_be_re_included(tmp_path: Path) -> None:
    # git's rule, so the watcher agrees with a scan that never enters the directory
    rules = IgnoreRules.for_folder(tmp_path, ["drafts/", "!drafts/keep.html"])
    assert rules.is_ignored(RelPath("drafts/keep.html"))


def test_server_temp_names_cannot_be_re_included(tmp_path: Path) -> None:
    rules = IgnoreRules.for_folder(tmp_path, [f"!{SERVER_TEMP}"])
    assert rules.is_ignored(RelPath(SERVER_TEMP))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (SERVER_TEMP, True),
        (f"img/{SERVER_TEMP}", True),
        (".a.tmp-00000000-0000-0000-0000-000000000000", True),
        ("logo.png.tmp-123e4567-e89b-12d3-a456-426614174000", False),  # not hidden
        (".logo.png.tmp-123E4567-E89B-12D3-A456-426614174000", False),  # Java UUIDs are lower
        (".logo.png.tmp-1234", False),
        (".tmp-123e4567-e89b-12d3-a456-426614174000", False),  # no name part
    ],
)
def test_is_server_temp(name: str, expected: bool) -> None:
    assert is_server_temp(RelPath(name)) is expected
    assert is_server_temp(name) is expected
    assert (SERVER_TEMP_RE.match(RelPath(name).name) is not None) is expected


def test_psychopy_folder_ignores_top_level_data(tmp_path: Path) -> None:
    (tmp_path / "stroop.psyexp").write_text("<PsychoPy2experiment/>", encoding="utf-8")
    rules = IgnoreRules.for_folder(tmp_path)
    assert rules.is_ignored(RelPath("data/P01_stroop.csv"))
    assert rules.is_ignored(RelPath("data"), is_dir=True)
    assert not rules.is_ignored(RelPath("stimuli/data/words.csv"))  # no experiment there
    assert not rules.is_ignored(RelPath("stroop.psyexp"))


def test_non_psychopy_folder_keeps_data(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "nested.psyexp").write_text("", encoding="utf-8")
    rules = IgnoreRules.for_folder(tmp_path)
    assert not rules.is_ignored(RelPath("data/stim.csv"))
    assert not rules.is_ignored(RelPath("data"), is_dir=True)


@pytest.mark.parametrize("where", ["stroop/", "tasks/week 1/stroop/"])
def test_psychopy_data_next_to_an_experiment_in_a_subfolder_is_ignored(
    tmp_path: Path, where: str
) -> None:
    (tmp_path / where).mkdir(parents=True)
    (tmp_path / where / "stroop.psyexp").write_text("<PsychoPy2experiment/>", encoding="utf-8")
    rules = IgnoreRules.for_folder(tmp_path)
    assert rules.is_ignored(RelPath(f"{where}data/P01_stroop_2024.csv"))
    assert rules.is_ignored(RelPath(f"{where}data/sub/P01.log"))
    assert rules.is_ignored(RelPath(f"{where}data"), is_dir=True)
    assert rules.match_entry(f"{where}data", is_dir=True)  # as the scan asks
    assert not rules.is_ignored(RelPath(f"{where}stroop.psyexp"))
    assert not rules.is_ignored(RelPath(f"{where}stimuli/data/words.csv"))
    assert not rules.is_ignored(RelPath("data/stim.csv"))  # no experiment at the top
    assert not rules.is_ignored(RelPath(f"{where}data"))  # a *file* named data


def test_psychopy_rule_ignores_letter_case_of_the_experiment_and_the_data_folder(
    tmp_path: Path,
) -> None:
    (tmp_path / "Exp").mkdir()
    (tmp_path / "Exp" / "Stroop.PsyExp").write_text("", encoding="utf-8")
    rules = IgnoreRules.for_folder(tmp_path)
    assert rules.is_ignored(RelPath("Exp/Data/P01.csv"))
    assert rules.is_ignored(RelPath("Exp/DATA/P01.csv"))


def test_a_folder_named_like_an_experiment_is_not_one(tmp_path: Path) -> None:
    (tmp_path / "old.psyexp").mkdir()
    assert not IgnoreRules.for_folder(tmp_path).is_ignored(RelPath("data/stim.csv"))


def test_psychopy_data_can_be_re_included_explicitly(tmp_path: Path) -> None:
    (tmp_path / "stroop.psyexp").write_text("", encoding="utf-8")
    (tmp_path / ".jatosignore").write_text("!/data/\n", encoding="utf-8")
    assert not IgnoreRules.for_folder(tmp_path).is_ignored(RelPath("data/stim.csv"))


def test_psychopy_data_in_a_subfolder_can_be_re_included_by_the_mapping(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.psyexp").write_text("", encoding="utf-8")
    (tmp_path / "b" / "y.psyexp").write_text("", encoding="utf-8")
    rules = IgnoreRules.for_folder(tmp_path, ["!a/data/"])
    assert not rules.is_ignored(RelPath("a/data/stim.csv"))
    assert rules.is_ignored(RelPath("b/data/P01.csv"))


def test_an_experiment_created_or_removed_later_changes_the_answer(tmp_path: Path) -> None:
    (tmp_path / "stroop" / "data").mkdir(parents=True)
    rules = IgnoreRules.for_folder(tmp_path)
    path = RelPath("stroop/data/P01.csv")
    assert not rules.is_ignored(path)
    experiment = tmp_path / "stroop" / "stroop.psyexp"
    experiment.write_text("", encoding="utf-8")
    assert rules.is_ignored(path)
    experiment.unlink()
    assert not rules.is_ignored(path)


class CountingScandir:
    """os.scandir for ignore.py, counting the listings of each directory."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, path: str) -> Any:
        self.calls.append(os.fspath(path))
        return REAL_SCANDIR(path)


REAL_SCANDIR = os.scandir


def test_a_directory_is_listed_once_while_it_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stroop = tmp_path / "stroop"
    (stroop / "data").mkdir(parents=True)
    (stroop / "stroop.psyexp").write_text("", encoding="utf-8")
    an_hour_ago = time.time_ns() - 3600 * 10**9
    os.utime(stroop, ns=(an_hour_ago, an_hour_ago))
    counting = CountingScandir()
    monkeypatch.setattr("jatos_sync.ignore.os.scandir", counting)
    rules = IgnoreRules.for_folder(tmp_path)
    for n in range(100):
        assert rules.is_ignored(RelPath(f"stroop/data/P{n:02}.csv"))
    assert counting.calls == [str(stroop)]
    (stroop / "stroop.psyexp").unlink()  # changes the directory's mtime
    assert not rules.is_ignored(RelPath("stroop/data/P01.csv"))
    assert counting.calls == [str(stroop)] * 2


def test_a_directory_changed_within_the_last_seconds_is_listed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its mtime may not change again for a file created within the same timestamp tick.
    stroop = tmp_path / "stroop"
    stroop.mkdir()
    mtime = stroop.stat().st_mtime_ns
    counting = CountingScandir()
    monkeypatch.setattr("jatos_sync.ignore.os.scandir", counting)
    rules = IgnoreRules(folder=tmp_path, clock_ns=lambda: mtime + 10**9)
    assert not rules.is_ignored(RelPath("stroop/data/P01.csv"))
    assert not rules.is_ignored(RelPath("stroop/data/P02.csv"))
    assert len(counting.calls) == 2


def test_rules_without_a_folder_have_no_psychopy_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # even where a relative path would find an experiment
    (tmp_path / "x.psyexp").write_text("", encoding="utf-8")
    assert not IgnoreRules().is_ignored(RelPath("data/P01.csv"))


@pytest.mark.parametrize(
    ("path", "decides"),
    [
        (".jatosignore", True),
        ("sub/.jatosignore", False),
        ("stroop.psyexp", True),
        ("tasks/stroop/Stroop.PSYEXP", True),
        ("index.html", False),
        ("psyexp", False),
    ],
)
def test_decides_rules_names_the_files_the_rules_depend_on(path: str, decides: bool) -> None:
    assert IgnoreRules().decides_rules(RelPath(path)) is decides


def test_bad_pattern_in_jatosignore_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / ".jatosignore").write_text("# fine\n*.psd\nimg\\\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        IgnoreRules.for_folder(tmp_path)
    message = str(caught.value)
    assert f"{tmp_path / '.jatosignore'}:3:" in message
    assert "img\\\\" in message


def test_invalid_character_range_in_jatosignore_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / ".jatosignore").write_text("[z-a].png\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\.jatosignore:1:"):
        IgnoreRules.for_folder(tmp_path)


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("[[:alpha:]].png", "such as [[:alpha:]]"),
        ("a\x00b", "it contains a NUL character"),
        ("img\\", "it ends with a lone backslash"),
    ],
)
def test_jatosignore_lines_get_the_same_checks_as_configured_patterns(
    tmp_path: Path, line: str, fragment: str
) -> None:
    (tmp_path / ".jatosignore").write_text(f"*.psd\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        IgnoreRules.for_folder(tmp_path)
    assert f"{tmp_path / '.jatosignore'}:2:" in str(caught.value)
    assert fragment in str(caught.value)


def test_bad_mapping_pattern_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'!'"):
        IgnoreRules.for_folder(tmp_path, ["drafts/", "!"])


def test_undecodable_jatosignore_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / ".jatosignore").write_bytes(b"caf\xe9.png\n")
    with pytest.raises(ConfigError, match="Cannot read the ignore file"):
        IgnoreRules.for_folder(tmp_path)


def test_jatosignore_that_is_a_directory_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / ".jatosignore").mkdir()
    with pytest.raises(ConfigError, match="Cannot read the ignore file"):
        IgnoreRules.for_folder(tmp_path)


def test_missing_folder_gives_builtin_rules_only(tmp_path: Path) -> None:
    rules = IgnoreRules.for_folder(tmp_path / "missing")
    assert rules.patterns == BUILTIN_PATTERNS
    assert rules.is_ignored(RelPath(".DS_Store"))


def test_pattern_problem_reports_only_invalid_patterns() -> None:
    assert pattern_problem("drafts/") is None
    assert pattern_problem("# a comment") is None
    assert pattern_problem("") is None
    assert pattern_problem("!") is not None


def test_empty_path_is_not_ignored(rules: IgnoreRules) -> None:
    assert not rules.is_ignored(RelPath("."))


# --- generated ignore files: thousands of patterns -------------------------------------


def write_ignore_file(folder: Path, lines: list[str]) -> None:
    (folder / ".jatosignore").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_generated_jatosignore_of_10000_lines_is_compiled_and_applied(tmp_path: Path) -> None:
    lines = [f"build/chunk{i}/asset-{i:05}.js" for i in range(10_000)]
    lines.append("!build/chunk9999/asset-09999.js")
    write_ignore_file(tmp_path, lines)
    rules = IgnoreRules.for_folder(tmp_path)
    assert rules.is_ignored(RelPath("build/chunk0/asset-00000.js"))
    assert rules.is_ignored(RelPath("build/chunk5000/asset-05000.js"))
    assert not rules.is_ignored(RelPath("build/chunk9999/asset-09999.js"))
    assert not rules.is_ignored(RelPath("build/chunk0/other.js"))
    assert rules.is_ignored(RelPath("img/.DS_Store"))  # the built-ins still apply


def test_thousands_of_glob_patterns_keep_gitignore_order_across_the_whole_file(
    tmp_path: Path,
) -> None:
    # A re-include thousands of lines after the pattern it overrides, directory patterns
    # and file patterns mixed, and a mapping pattern after all of them.
    lines = ["*.wav", "drafts/"]
    lines += [f"stimuli/set{i % 97}/*.{('png', 'jpg', 'gif')[i % 3]}{i}" for i in range(8_000)]
    lines += ["!keep.wav", "!drafts/"]
    write_ignore_file(tmp_path, lines)
    rules = IgnoreRules.for_folder(tmp_path, ["late/"])
    assert rules.is_ignored(RelPath("audio/beep.wav"))
    assert not rules.is_ignored(RelPath("audio/keep.wav"))
    assert not rules.is_ignored(RelPath("drafts"), is_dir=True)
    assert rules.is_ignored(RelPath("stimuli/set90/a.png3000"))  # line 3003
    assert not rules.is_ignored(RelPath("stimuli/set90/a.png3001"))
    assert rules.is_ignored(RelPath("late/x.js"))


PATTERN_PIECES = [
    "a", "b/", "*.js", "!a", "!*.js", "/c", "d/**/e", "**/f", "!b/", "a/*", "!/c", "*",
    "!d/", "c/", "x?.js", "[ab].css", "!**/f", "e/", "!e", "/a/b", "!x1.js", "b/*.js",
]  # fmt: skip
PATHS = [
    ("a", False), ("a", True), ("b", True), ("b/x.js", False), ("c", False), ("c", True),
    ("d/e", False), ("d/q/e", True), ("f", False), ("g/f", True), ("a/b", False),
    ("x1.js", False), ("a.css", False), ("e", True), ("e/a", False), ("k/c", False),
]  # fmt: skip


@given(
    patterns=st.lists(st.sampled_from(PATTERN_PIECES), max_size=40),
    chunk_size=st.integers(min_value=1, max_value=5),
)
def test_rules_split_into_several_automata_match_exactly_like_one(
    patterns: list[str], chunk_size: int
) -> None:
    split = IgnoreRules(patterns, chunk_size=chunk_size)
    reference = GitIgnoreSpec.from_lines(patterns, backend="simple")
    for path, is_dir in PATHS:
        expected = reference.match_file(path + "/" if is_dir else path)
        assert split.match_entry(path, is_dir=is_dir) == expected, (path, is_dir)


def test_pattern_problem_does_not_depend_on_the_matching_backend() -> None:
    assert pattern_problem("a" * 100_000) is None
    assert pattern_problem("[z-a]") is not None


def test_sync_with_a_generated_jatosignore_of_10000_lines_uploads_the_rest(
    world310: World,
) -> None:
    lines = [f"build/chunk{i}/asset-{i:05}.js" for i in range(10_000)]
    write_ignore_file(world310.folder, lines)
    world310.put("build/chunk7/asset-00007.js", "generated")
    world310.put("build/chunk7/kept.js", "kept")
    world310.put("index.html", "<html></html>")
    result = world310.run("sync", "--json")
    assert result.code == 0, result.err
    assert "error" not in result.json["mappings"][0]
    assert world310.remote() == {"build/chunk7/kept.js": b"kept", "index.html": b"<html></html>"}


@pytest.mark.parametrize("name", ["conf [1]*.yaml", "!important", "#notes", "trailing ", "a\\b?"])
def test_literal_pattern_matches_exactly_that_path(name: str) -> None:
    rules = IgnoreRules([literal_pattern(name)])
    assert rules.is_ignored(RelPath(name))
    assert not rules.is_ignored(RelPath("sub/" + name))
    assert not rules.is_ignored(RelPath(name.strip() + "x"))
    assert not rules.is_ignored(RelPath("conf 1x.yaml"))
