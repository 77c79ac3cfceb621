"""The platform's REST API as pb calls it: the one place where HTTP outcomes become the
tool's errors, and so its exit codes (1 refused or failed, 3 unreachable or not signed in)."""

import os
import tempfile
from pathlib import Path
from typing import Any

import httpx

from . import __version__

API_PREFIX = "/api/v1"


class PbError(Exception):
    """A failure the tool reports and exits on; `problem` is what --json prints."""

    exit_code = 1

    def __init__(self, message: str, problem: dict | None = None):
        super().__init__(message)
        self.message = message
        self.problem = problem or {"title": message}


class ApiRefused(PbError):
    """The platform answered with an error: an RFC 9457 problem document."""

    exit_code = 1

    def __init__(self, problem: dict):
        super().__init__(problem.get("detail") or problem.get("title") or "", problem)


class Unreachable(PbError):
    exit_code = 3


class NotSignedIn(PbError):
    exit_code = 3


def problem_of(response: httpx.Response) -> dict:
    """The response's problem document; one made up from the status when a proxy or a crash
    answered with something else."""
    try:
        document = response.json()
    except ValueError:
        document = None
    if isinstance(document, dict) and "status" in document:
        return document
    return {"status": response.status_code, "title": response.reason_phrase,
            "detail": response.text.strip()[:300] or None}


class Platform:
    """One platform at `url`, signed in with `token` (or not, for POST /auth/token)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None):
        self.url = url
        headers = {"User-Agent": f"pb/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=url.rstrip("/") + API_PREFIX, headers=headers, transport=transport,
                                  timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)))

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, *, login: bool = False, **kwargs) -> Any:
        """The JSON the API answers with. `login`: a 401 means wrong credentials, not an
        expired sign-in."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        self._check(response, login)
        return response.json() if response.content else None

    def download(self, path: str, destination: Path, params: dict | None = None) -> int:
        """Streams a file the API serves into `destination`, whole or not at all (a failed
        download leaves no half-written workbook behind); returns its size in bytes."""
        destination = destination.resolve()
        handle, partial = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".part", dir=destination.parent)
        try:
            size = 0
            with os.fdopen(handle, "wb") as file:
                try:
                    with self._http.stream("GET", path, params=params) as response:
                        if response.is_error:
                            response.read()
                            self._check(response, login=False)
                        for chunk in response.iter_bytes():
                            file.write(chunk)
                            size += len(chunk)
                except httpx.TransportError as exc:
                    raise self._unreachable(exc) from exc
            os.chmod(partial, 0o644)
            os.replace(partial, destination)
            return size
        finally:
            if os.path.exists(partial):
                os.unlink(partial)

    def _unreachable(self, exc: httpx.TransportError) -> Unreachable:
        reason = str(exc) or type(exc).__name__
        return Unreachable(f"无法连接平台 {self.url}：{reason}",
                           {"title": "cannot reach the platform", "detail": reason, "url": self.url})

    @staticmethod
    def _check(response: httpx.Response, login: bool) -> None:
        if not response.is_error:
            return
        problem = problem_of(response)
        if response.status_code == 401 and not login:
            raise NotSignedIn("登录已过期或无效，请重新运行 pb login", problem)
        raise ApiRefused(problem)
