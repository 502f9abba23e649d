"""`jatos-sync demo --once`: the sample project lands on a built-in stand-in."""

from __future__ import annotations

import io
from pathlib import Path

from jatos_sync.cli import main

REPO = Path(__file__).resolve().parent.parent


def test_demo_once_syncs_the_sample_project_and_explains_the_next_steps() -> None:
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["-c", str(REPO / "jatos-sync.yaml"), "demo", "--once"], environ={}, stdout=out, stderr=err
    )
    text = out.getvalue()
    assert code == 0, text + err.getvalue()
    expected = [
        "index.html",
        "js/experiment.js",
        "css/style.css",
        "stimuli/practice/list 1.csv",
        "img/fixation.svg",
    ]
    served = text.split("now serves", 1)[1]
    assert all(name in served for name in expected)
    assert "drafts/ideas.txt" not in served  # ignored by the sample's .jatosignore
    assert "9 uploaded" in text
    assert "set server.url" in text and "API tokens" in text


def test_demo_without_a_config_file_says_what_to_do(tmp_path: Path) -> None:
    err = io.StringIO()
    code = main(
        ["-c", str(tmp_path / "none.yaml"), "demo", "--once"],
        environ={},
        stdout=io.StringIO(),
        stderr=err,
    )
    assert code == 2
    assert "none.yaml" in err.getvalue()
