"""settings: MLOOP_* environment, then mloop.toml in the working directory, then defaults.

The autouse ``_isolated_env`` fixture clears MLOOP_* and chdirs into ``tmp_path``."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from mloop.core.settings import Settings


def test_defaults(tmp_path: Path) -> None:
    settings = Settings()
    assert settings.home == Path(".mloop")
    assert settings.database_url is None
    assert settings.resolved_database_url() == f"sqlite:///{tmp_path / '.mloop' / 'mloop.db'}"
    assert settings.resolved_artifact_root() == tmp_path / ".mloop" / "artifacts"


def test_environment_variables_are_honoured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLOOP_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("MLOOP_DATABASE_URL", "postgresql+psycopg://u@db.example/mloop")
    monkeypatch.setenv("MLOOP_PREDICTION_LOG_BATCH_SIZE", "7")
    settings = Settings()
    assert settings.home == tmp_path / "elsewhere"
    assert settings.resolved_database_url() == "postgresql+psycopg://u@db.example/mloop"
    assert settings.resolved_artifact_root() == tmp_path / "elsewhere" / "artifacts"
    assert settings.prediction_log_batch_size == 7


def test_mloop_home_alone_moves_the_sqlite_database(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLOOP_HOME", str(tmp_path / "ws"))
    assert Settings().resolved_database_url() == f"sqlite:///{tmp_path / 'ws' / 'mloop.db'}"


def test_mloop_toml_in_the_working_directory_is_honoured(tmp_path: Path) -> None:
    (tmp_path / "mloop.toml").write_text(
        'home = "from-toml"\n'
        'database_url = "sqlite:////srv/mloop/meta.db"\n'
        'artifact_root = "/srv/mloop/blobs"\n'
        "alias_cache_seconds = 0\n"
    )
    settings = Settings()
    assert settings.home == Path("from-toml")
    assert settings.resolved_database_url() == "sqlite:////srv/mloop/meta.db"
    assert settings.resolved_artifact_root() == Path("/srv/mloop/blobs")
    assert settings.alias_cache_seconds == 0


def test_environment_beats_toml_and_arguments_beat_both(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "mloop.toml").write_text('home = "from-toml"\nprediction_log_batch_size = 3\n')
    monkeypatch.setenv("MLOOP_HOME", "from-env")
    settings = Settings()
    assert settings.home == Path("from-env")
    assert settings.prediction_log_batch_size == 3  # not in the environment: toml still counts
    assert Settings(home=Path("from-arg")).home == Path("from-arg")


def test_a_toml_elsewhere_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mloop.toml").write_text('home = "from-sub"\n')
    assert Settings().home == Path(".mloop")


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOOP_PREDICTION_LOG_BATCH_SIZE", "0")
    with pytest.raises(pydantic.ValidationError, match="prediction_log_batch_size"):
        Settings()


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(pydantic.ValidationError):
        settings.home = Path("x")  # type: ignore[misc]
