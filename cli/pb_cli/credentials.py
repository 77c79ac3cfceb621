"""Where pb keeps the sign-in between runs: one file, readable by its owner only, under
$XDG_CONFIG_HOME/pb (or ~/.config/pb). PB_TOKEN, when set, is used instead of it."""

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8080"
TOKEN_ENV = "PB_TOKEN"


@dataclass
class Credentials:
    url: str
    token: str
    username: str
    expires_at: str  # RFC 3339

    def expired(self, now: datetime | None = None) -> bool:
        return datetime.fromisoformat(self.expires_at) <= (now or datetime.now(timezone.utc))


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pb"


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


def normalized(url: str) -> str:
    return url.rstrip("/")


def load() -> Credentials | None:
    """The stored sign-in; None when there is none or it is unreadable (sign in again)."""
    try:
        fields = json.loads(credentials_path().read_text(encoding="utf-8"))
        return Credentials(**fields)
    except (OSError, ValueError, TypeError):
        return None


def save(credentials: Credentials) -> Path:
    """Written to a private temporary file and renamed: the token is never readable by others,
    not even for a moment, and an interrupted write leaves the previous file."""
    directory = config_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=".credentials.", dir=directory)  # mode 0600
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(asdict(credentials), file, ensure_ascii=False)
        os.replace(partial, credentials_path())
    except BaseException:
        os.unlink(partial)
        raise
    return credentials_path()


def forget() -> bool:
    """Removes the stored sign-in; False when there was none."""
    try:
        credentials_path().unlink()
        return True
    except FileNotFoundError:
        return False
