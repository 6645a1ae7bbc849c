"""Where model files are looked up: the documented order, and the installed models/ folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from person_search.core import paths

ROOT = Path(__file__).resolve().parents[2]


def test_search_order(monkeypatch, tmp_path):
    monkeypatch.setenv("PERSON_SEARCH_MODELS", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    monkeypatch.setenv("ROS_HOME", str(tmp_path / "roshome"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PERSON_SEARCH_SHARED_MODELS", str(tmp_path / "shared"))
    dirs = paths.model_dirs()
    assert tmp_path / "shared" not in dirs  # the shared test models only where the folder exists
    (tmp_path / "shared").mkdir()
    assert paths.model_dirs()[-1] == tmp_path / "shared"  # and then last of all
    assert dirs[:4] == [tmp_path / "a", tmp_path / "b", tmp_path / "roshome" / "person_search" / "models",
                        tmp_path / "home" / ".cache" / "person_search" / "models"]
    assert dirs[-1] == paths.MODELS_DIR  # the source tree comes last
    share = [d for d in dirs[4:-1]]
    assert all(d.parts[-3:] == ("share", "person_search", "models") for d in share), share


def test_first_match_wins(monkeypatch, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "yolo.pt").write_bytes(b"x")
    monkeypatch.setenv("PERSON_SEARCH_MODELS", str(tmp_path / "a"))
    assert paths.resolve_model_path("yolo.pt") == (tmp_path / "a" / "yolo.pt").resolve()
    assert paths.resolve_model_path("nothing-here.pt") is None


def test_colcon_install_ships_models_readme():
    installed = ROOT / "install" / "person_search" / "share" / "person_search" / "models" / "README.md"
    if not (ROOT / "install" / "person_search").is_dir():
        pytest.skip("no colcon install here (tools/setup_env.sh builds one)")
    assert installed.is_file() and not installed.is_symlink()
