"""The AsyncAPI document of the event catalogue, generated from the pydantic models.

    python -m platform_contracts.asyncapi > docs/asyncapi.json

Each event type is a message on its source's topic exchange `<source>.events`, routing key =
type; the payload is the CloudEvents envelope with `data` of the type's model. Only what is
published has a channel: an event whose source no running service is yet (the registry says
which are) keeps its message, marked `x-planned`. `make test` validates the document with the
AsyncAPI CLI (tests/test_asyncapi_cli.py), warnings included."""

import json
import sys

from pydantic import TypeAdapter

from .envelope import CloudEvent
from .events import CATALOGUE, exchange_for

VERSION = "1.0.0"


def _schema_name(event_type: str) -> str:
    return "".join(part.capitalize() for part in event_type.replace(".", "_").split("_"))


# Always on the wire (the model fills them in), so required of what is received.
ENVELOPE_REQUIRED = ["id", "specversion", "source", "type", "time"]


def document(published_sources: set[str]) -> dict:
    """The document; `published_sources` are the sources something publishes today."""
    envelope = CloudEvent.model_json_schema(ref_template="#/components/schemas/{model}")
    envelope_defs = envelope.pop("$defs", {})
    envelope["required"] = ENVELOPE_REQUIRED
    envelope["properties"]["source"]["format"] = "uri-reference"
    schemas: dict = {"CloudEvent": envelope, **envelope_defs}
    messages, channels = {}, {}
    for event_type, (source, model) in sorted(CATALOGUE.items()):
        data_schema = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(data_schema.pop("$defs", {}))
        name = _schema_name(event_type)
        schemas[f"{name}Data"] = data_schema
        messages[name] = {
            "messageId": event_type,
            "name": event_type,
            "title": event_type,
            "tags": [{"name": source}],
            "contentType": "application/cloudevents+json",
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/CloudEvent"},
                    {"type": "object", "properties": {
                        "type": {"const": event_type},
                        "source": {"const": source},
                        "data": {"$ref": f"#/components/schemas/{name}Data"},
                    }},
                ]
            },
        }
        if source not in published_sources:
            messages[name]["x-planned"] = True
            messages[name]["description"] = f"planned: no {source} service publishes it yet"
            continue
        channel = f"{exchange_for(source)}/{event_type}"
        channels[channel] = {
            "description": f"{event_type}, published by {source} on exchange {exchange_for(source)}",
            "bindings": {"amqp": {"is": "routingKey", "exchange": {
                "name": exchange_for(source), "type": "topic", "durable": True, "autoDelete": False}}},
            "subscribe": {"operationId": f"on{name}", "message": {"$ref": f"#/components/messages/{name}"}},
        }
    return {
        "asyncapi": "2.6.0",
        "id": "urn:partybuilding:events",
        "info": {"title": "Emerging-sector party building platform: events", "version": VERSION,
                 "description": "CloudEvents 1.0 on RabbitMQ (AMQP 0-9-1, structured content mode); also on the "
                                "gateway's SSE and WebSocket streams.",
                 "contact": {"name": "Platform team", "url": "https://partybuilding.example.com/docs",
                             "email": "platform@partybuilding.example.com"},
                 "license": {"name": "Proprietary"}},
        "servers": {
            "production": {"url": "rabbitmq.partybuilding.svc.cluster.local:5671", "protocol": "amqps",
                           "protocolVersion": "0-9-1",
                           "description": "the prod overlay's RabbitMQ cluster, vhost partybuilding, TLS"},
            "local": {"url": "127.0.0.1:5672", "protocol": "amqp", "protocolVersion": "0-9-1",
                      "description": "make run: the local broker, vhost /"},
        },
        "tags": [{"name": source, "description": f"events the {source} service publishes"}
                 for source in sorted({source for source, _ in CATALOGUE.values()})],
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "components": {"messages": messages, "schemas": schemas},
    }


def published_sources() -> set[str]:
    """The registry's services (the gateway publishes notifications)."""
    from service_kit import registry

    return set(registry.load())


if __name__ == "__main__":
    json.dump(document(published_sources()), sys.stdout, indent=2, ensure_ascii=False, sort_keys=True)
    sys.stdout.write("\n")
