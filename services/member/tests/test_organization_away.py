"""The member service when the organization service it asks is away: a 503 within the RPC
timeout, nothing written, and the service goes on answering what needs no organization —
never a worker waiting for ever. Only the member service runs here, in a vhost of its own."""

import uuid

import pymongo
import pytest
from kombu import Connection, Queue

from platform_contracts.problems import Rejected
from platform_testing import rabbit_vhost, rpc_cluster, wait_for

ADMIN = {"username": "admin", "role": "admin", "scope": None}

TIMEOUT_SECONDS = 1
GATEWAY_RPC_TIMEOUT_SECONDS = 10  # the gateway's default RPC_TIMEOUT_SECONDS


@pytest.fixture(scope="module")
def lone_member(mongodb_uri, start_session_service):
    with rabbit_vhost() as amqp_uri:
        database = f"member_alone_{uuid.uuid4().hex[:6]}"
        service = start_session_service("member", {
            "AMQP_URI": amqp_uri, "MONGODB_MEMBER_DB": database,
            "ORGANIZATION_RPC_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
        }, log_name="member-alone")
        client = pymongo.MongoClient(mongodb_uri)
        try:
            with rpc_cluster(amqp_uri) as proxy:
                yield proxy.member, amqp_uri, client[database]
        finally:
            service.stop()
            client.close()


def register(rpc, new_id_number):
    return rpc.register_member({"name": "王骑手", "id_number": new_id_number(), "organization_id": "o1",
                                "stage": "applicant", "occupation": "rider"},
                               actor=ADMIN, command_id=uuid.uuid4().hex)


def test_no_organization_service_at_all_is_a_503(lone_member, new_id_number):
    rpc, _, database = lone_member
    with pytest.raises(Rejected) as refused:
        register(rpc, new_id_number)
    assert refused.value.status == 503 and "not running" in refused.value.problem["detail"]
    assert database.members.count_documents({}) == 0


def test_an_organization_service_that_does_not_answer_is_a_503_in_time(lone_member, new_id_number):
    rpc, amqp_uri, database = lone_member
    with Connection(amqp_uri) as connection:  # its queue is there, nobody consumes it
        Queue("rpc-organization", durable=True)(connection.default_channel).declare()
    outcomes = []
    # Called as the gateway calls it, with its RPC timeout: a worker stuck waiting would make a
    # call time out (nameko's RpcTimeout), not answer.
    with rpc_cluster(amqp_uri, timeout=GATEWAY_RPC_TIMEOUT_SECONDS) as proxy:
        for _ in range(12):  # more than the service has workers: none of them may stay stuck
            with pytest.raises(Rejected) as refused:
                register(proxy.member, new_id_number)
            outcomes.append(refused.value.status)
    assert outcomes == [503] * 12
    assert database.members.count_documents({}) == 0
    # Queries that need no organization are answered as before.
    wait_for(lambda: rpc.list_members({}, actor=ADMIN)["items"] == [], timeout=10, what="list_members")
