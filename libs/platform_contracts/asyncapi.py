"""The AsyncAPI document of the event catalogue, generated from the pydantic models.

    python -m platform_contracts.asyncapi > docs/asyncapi.json

Each event type is a message on its source's topic exchange `<source>.events`, routing key =
type; the payload is the CloudEvents envelope with `data` of the type's model."""

import json
import sys

from pydantic import TypeAdapter

from .envelope import CloudEvent
from .events import CATALOGUE, exchange_for

VERSION = "1.0.0"


def _schema_name(event_type: str) -> str:
    return "".join(part.capitalize() for part in event_type.replace(".", "_").split("_"))


def document() -> dict:
    envelope = CloudEvent.model_json_schema(ref_template="#/components/schemas/{model}")
    envelope_defs = envelope.pop("$defs", {})
    schemas: dict = {"CloudEvent": envelope, **envelope_defs}
    messages, channels = {}, {}
    for event_type, (source, model) in sorted(CATALOGUE.items()):
        data_schema = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(data_schema.pop("$defs", {}))
        name = _schema_name(event_type)
        schemas[f"{name}Data"] = data_schema
        messages[name] = {
            "name": event_type,
            "title": event_type,
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
        channel = f"{exchange_for(source)}/{event_type}"
        channels[channel] = {
            "description": f"{event_type}, published by {source} on exchange {exchange_for(source)}",
            "bindings": {"amqp": {"is": "routingKey", "exchange": {
                "name": exchange_for(source), "type": "topic", "durable": True, "autoDelete": False}}},
            "subscribe": {"operationId": f"on{name}", "message": {"$ref": f"#/components/messages/{name}"}},
        }
    return {
        "asyncapi": "2.6.0",
        "info": {"title": "Emerging-sector party building platform: events", "version": VERSION,
                 "description": "CloudEvents 1.0 on RabbitMQ; also on the gateway's SSE and WebSocket streams."},
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "components": {"messages": messages, "schemas": schemas},
    }


if __name__ == "__main__":
    json.dump(document(), sys.stdout, indent=2, ensure_ascii=False, sort_keys=True)
    sys.stdout.write("\n")
