"""Workspace.open: folders, URLs, settings, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from mloop.core.errors import InvalidInput
from mloop.storage import HEAD_REVISION
from mloop.workspace import Workspace


def test_opens_a_new_folder_and_creates_it(tmp_path: Path) -> None:
    home = tmp_path / "a" / "b"
    with Workspace.open(home) as ws:
        info = ws.info()
    assert (home / "mloop.db").is_file()
    assert (home / "artifacts" / "sha256").is_dir()
    assert info["schema_revision"] == HEAD_REVISION
    assert info["home"] == str(home.resolve())


def test_default_is_dot_mloop_in_the_working_directory(tmp_path: Path) -> None:
    # conftest chdirs every test into its tmp_path and clears MLOOP_* variables
    with Workspace.open() as ws:
        assert ws.home == (tmp_path / ".mloop").resolve()


def test_mloop_home_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOOP_HOME", str(tmp_path / "elsewhere"))
    with Workspace.open() as ws:
        assert ws.home == (tmp_path / "elsewhere").resolve()


def test_file_url(tmp_path: Path) -> None:
    with Workspace.open((tmp_path / "viaurl").as_uri()) as ws:
        assert ws.home == (tmp_path / "viaurl").resolve()


def test_reopening_sees_the_same_data(tmp_path: Path) -> None:
    import polars as pl

    with Workspace.open(tmp_path / "w") as ws:
        version = ws.datasets.ingest(pl.DataFrame({"x": [1, 2]}), name="d")
    with Workspace.open(tmp_path / "w") as ws:
        assert ws.datasets.get("d@1").content_hash == version.content_hash


@pytest.mark.parametrize("url", ["http://example.com/ws", "s3://bucket/ws"])
def test_refuses_urls_it_cannot_open(url: str) -> None:
    with pytest.raises(InvalidInput, match="give a folder or a file:// URL"):
        Workspace.open(url)


def test_invalid_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLOOP_PREDICTION_LOG_BATCH_SIZE", "0")
    with pytest.raises(InvalidInput, match="MLOOP_PREDICTION_LOG_BATCH_SIZE"):
        Workspace.open(tmp_path / "w")
    assert not (tmp_path / "w").exists()
