"""The stored sign-in: where it lives, who may read it."""

import stat
from datetime import datetime, timedelta, timezone

import pytest

from pb_cli import credentials
from pb_cli.credentials import Credentials


@pytest.fixture
def config_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


def signed_in(expires_in: timedelta = timedelta(hours=1)) -> Credentials:
    return Credentials(url="http://127.0.0.1:8080", token="token-value", username="admin",
                       expires_at=(datetime.now(timezone.utc) + expires_in).isoformat())


def test_saved_under_xdg_config_home_readable_by_its_owner_only(config_home):
    stored = signed_in()
    path = credentials.save(stored)
    assert path == config_home / "pb" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert credentials.load() == stored
    assert [p.name for p in path.parent.iterdir()] == ["credentials.json"]  # no temporary file left


def test_without_xdg_config_home_it_is_under_dot_config(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert credentials.credentials_path() == tmp_path / ".config" / "pb" / "credentials.json"


def test_saving_again_replaces_and_keeps_the_mode(config_home):
    credentials.save(signed_in())
    credentials.credentials_path().chmod(0o644)  # loosened by hand
    credentials.save(Credentials(url="http://other:8080", token="t2", username="op", expires_at=signed_in().expires_at))
    assert credentials.load().token == "t2"
    assert stat.S_IMODE(credentials.credentials_path().stat().st_mode) == 0o600


def test_forget(config_home):
    assert credentials.forget() is False
    credentials.save(signed_in())
    assert credentials.forget() is True and credentials.load() is None


def test_an_unreadable_file_is_no_sign_in(config_home):
    credentials.save(signed_in())
    credentials.credentials_path().write_text("{half")
    assert credentials.load() is None


def test_expiry():
    assert not signed_in().expired()
    assert signed_in(timedelta(seconds=-1)).expired()
