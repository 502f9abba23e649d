"""`jatos-sync demo`: the sample experiment shipped with the package lands on a built-in
stand-in, from any folder, with no configuration file."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest

from jatos_sync.cli import main
from jatos_sync.config import parse_config
from jatos_sync.demo import demo_config

EXPECTED = [
    "index.html",
    "consent.html",
    "js/experiment.js",
    "css/style.css",
    "stimuli/practice/list 1.csv",
    "img/fixation.svg",
]


def run_demo(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["demo", "--once", *args], environ={}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_demo_once_syncs_the_sample_experiment_from_an_empty_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no jatos-sync.yaml here, no checkout of the repository
    code, text, err = run_demo()
    assert code == 0, text + err
    served = text.split("now serves", 1)[1]
    assert all(name in served for name in EXPECTED)
    assert "drafts/ideas.txt" not in served  # ignored by the sample's .jatosignore
    # The server started empty: the sync created the study, with its definition.
    assert "with no study yet" in text
    assert "study 'Colour-word task (jatos-sync demo)' created" in text
    assert "component 'Consent' created" in text and "component 'Colour-word task' created" in text
    assert re.search(r"A link for participants.*\nhttp://127\.0\.0\.1:\d+/publix/\w{11}\n", text)
    assert "a temporary copy, removed at the end" in text
    assert "jatos-sync init" in text and "API tokens" in text
    assert os.listdir(tmp_path) == []  # nothing left behind where it ran


def test_demo_keeps_its_copy_in_a_folder_the_user_names(tmp_path: Path) -> None:
    folder = tmp_path / "my-demo"
    code, text, err = run_demo("--folder", str(folder))
    assert code == 0, text + err
    assert f"The sample experiment is in {folder}." in text
    assert (folder / "index.html").is_file() and (folder / ".jatosignore").is_file()


def test_demo_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("mine")
    code, _text, err = run_demo("--folder", str(tmp_path))
    assert code == 2
    assert "not an empty folder" in err
    assert os.listdir(tmp_path) == ["mine.txt"]


@pytest.mark.parametrize("name", ["exp #2", "my demo: v1", 'it\'s "quoted"'])
def test_the_demo_configuration_keeps_any_folder_name(tmp_path: Path, name: str) -> None:
    folder, results = tmp_path / name, tmp_path / f"{name} results"
    text = demo_config(
        url="http://127.0.0.1:9",
        token_file=tmp_path / name / "token",
        state_dir=tmp_path / name / "state",
        folder=folder,
        study_uuid="3c8d5a2e-6f0b-4f5e-9a51-0d2f4c7b9e11",
        results=results,
    )
    mapping = parse_config(text, path=tmp_path / "jatos-sync.yaml").mappings[0]
    assert (mapping.folder, mapping.results and mapping.results.folder) == (folder, results)
