"""Logging setup. Tokens must never reach a log: the SSE and WebSocket endpoints accept
`?access_token=`, and uvicorn logs each WebSocket's path with its query string."""

import logging
import re

_SECRET_PARAMETER = re.compile(r"(access_token=)[^&\s\"']+")
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+")


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _BEARER.sub(r"\1***", _SECRET_PARAMETER.sub(r"\1***", message))
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def configure(level: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    for handler in root.handlers:
        handler.addFilter(RedactTokens())
    root.setLevel(level)
    # aiormq logs every frame at DEBUG; keep it at INFO even when debugging the gateway.
    logging.getLogger("aiormq").setLevel(max(logging.INFO, root.level))
