"""Waiting for things that become true, and picking free ports."""

import asyncio
import socket
import time


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the thing waited for may raise until it is ready
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last error: {last_error!r}")


async def wait_for_async(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """wait_for inside an event loop: `predicate` is a coroutine function, awaited until what it
    returns is true."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = await predicate()
            if value:
                return value
        except Exception as exc:  # the thing waited for may raise until it is ready
            last_error = exc
        await asyncio.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last error: {last_error!r}")
