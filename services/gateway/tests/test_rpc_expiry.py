"""An RPC request expires with the gateway's timeout: a service that was away when it was sent
and comes back later never carries out a request whose client was already answered 504."""

import asyncio
import os
import pathlib
import subprocess
import sys
from contextlib import asynccontextmanager

import pytest

from platform_testing import queue_consumers, wait_for
from platform_testing.actors import signer
from gateway.problems import ApiProblem
from gateway.rpc import RpcClient

pytestmark = pytest.mark.timeout(60)

HERE = pathlib.Path(__file__).parent
CALLER_TIMEOUT = 1.0


def start_probe(amqp_uri: str, config_path, log_path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "nameko", "run", "expiry_probe", "--config", str(config_path)],
            cwd=HERE, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    wait_for(lambda: queue_consumers(amqp_uri, "rpc-expiry_probe") > 0, timeout=30,
             what=f"the expiry probe service (log: {log_path})")
    return process


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(15)


@asynccontextmanager
async def rpc_client(amqp_uri: str, timeout: float):
    client = RpcClient(amqp_uri, timeout=timeout, signer=signer())
    await client.start()
    try:
        yield client
    finally:
        await client.close()


def test_rpc_request_that_timed_out_is_not_carried_out_when_the_service_comes_back(amqp_uri, tmp_path):
    config = tmp_path / "probe.yaml"
    config.write_text(f"AMQP_URI: '{amqp_uri}'\nmax_workers: 1\n")
    log = tmp_path / "probe.log"
    stop(start_probe(amqp_uri, config, log))  # its durable request queue now exists, with nobody reading it

    async def call_while_away() -> ApiProblem:
        async with rpc_client(amqp_uri, CALLER_TIMEOUT) as client:
            with pytest.raises(ApiProblem) as timed_out:
                await client.call("expiry_probe", "record", label="timed out")
        # Part of the test, not a wait for something: the request's expiry must lapse while it is
        # queued, however late the broker took it.
        await asyncio.sleep(CALLER_TIMEOUT / 2)
        return timed_out.value

    answer = asyncio.run(call_while_away())
    assert answer.status == 504 and answer.document["retry_with_same_idempotency_key"] is True

    probe = start_probe(amqp_uri, config, log)
    try:
        async def after_return() -> list[str]:
            async with rpc_client(amqp_uri, 10) as client:
                await client.call("expiry_probe", "record", label="sent after the return")
                return await client.call("expiry_probe", "carried_out")

        # One worker, messages in queue order: a request left in the queue would have run first.
        assert asyncio.run(after_return()) == ["sent after the return"]
    finally:
        stop(probe)
