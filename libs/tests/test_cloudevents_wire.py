"""Issue 16, item 10: events on the broker are CloudEvents as the AMQP binding defines them.
The relay publishes the whole envelope as the body with content type
application/cloudevents+json (structured content mode); the official `cloudevents` SDK reads a
message taken off a real queue, every attribute and extension intact. As application/json the
SDK took it for binary mode and refused it (no ce- headers)."""

import pytest
from bson import ObjectId
from cloudevents.core.bindings.rabbitmq import RabbitMQMessage, from_rabbitmq
from cloudevents.core.formats.json import JSONFormat
from kombu import Connection, Exchange, Queue

from platform_contracts.envelope import CloudEvent, utc_now
from platform_testing import rabbit_vhost
from service_kit.outbox import CLOUDEVENTS_CONTENT_TYPE, ConfirmedPublisher, outbox_record


def test_the_official_sdk_reads_a_published_event_off_a_real_queue():
    event = CloudEvent(source="organization", type="unit.registered", subject="u-wire", division="370113001",
                       data={"unit_id": "u-wire", "name": "顺丰速运济南站", "employees": 12})
    envelope = event.to_json_dict()
    with rabbit_vhost() as amqp_uri, Connection(amqp_uri) as connection:
        exchange = Exchange("organization.events", "topic", durable=True)
        queue = Queue("wire-test", exchange=exchange, routing_key="#", auto_delete=True)
        queue(connection.default_channel).declare()
        publisher = ConfirmedPublisher(amqp_uri, exchange, "wire test")
        try:
            publisher.publish([outbox_record(ObjectId(), event.type, envelope, utc_now())])
        finally:
            publisher.close()
        message = queue(connection.default_channel).get(no_ack=True)
        assert message is not None and message.content_type == CLOUDEVENTS_CONTENT_TYPE
        received = from_rabbitmq(RabbitMQMessage(headers={}, content_type=message.content_type, body=message.body),
                                 JSONFormat())
        assert message.payload["id"] == event.id  # and kombu consumers decode it too
    attributes = received.get_attributes()
    assert (attributes["id"], attributes["source"], attributes["type"], attributes["subject"]) == \
        (event.id, "organization", "unit.registered", "u-wire")
    assert attributes["specversion"] == "1.0" and attributes["division"] == "370113001"
    assert received.get_data() == event.data


def test_as_application_json_the_sdk_would_not_take_it():
    body = CloudEvent(source="organization", type="unit.registered").model_dump_json().encode()
    with pytest.raises(Exception):
        from_rabbitmq(RabbitMQMessage(headers={}, content_type="application/json", body=body), JSONFormat())
