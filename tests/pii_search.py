"""The tools of tests/test_personal_data.py: personal data to put in, and the places to look
for it afterwards.

- `Secrets` makes ID numbers (18 characters, some ending in X, and 15-digit legacy ones) and
  mobile phones, in the forms people type into free text, and remembers where each was put.
- `Recorder` keeps every HTTP response a test receives (status, headers, body).
- `SocketListener` reads the gateway's WebSocket for a whole run.
- `database_texts`, `broker_queue_texts` and `publish_raw` read the services' databases and the
  broker's retry and dead-letter queues, and put malformed events on the broker.
- `leaks` searches all of it."""

import base64
import binascii
import contextlib
import json
import random
import re
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import httpx

from platform_contracts.member import id_number_check_character
from platform_testing import wait_for

# ---- the personal data ---------------------------------------------------------------------


def id_number(district: str, ending_in_x: bool = False) -> str:
    while True:
        born = date(1950, 1, 1) + timedelta(days=random.randrange(20000))
        body = f"{district}{born:%Y%m%d}{random.randrange(1000):03d}"
        check = id_number_check_character(body)
        if (check == "X") == ending_in_x:
            return body + check


def legacy_id_number(district: str) -> str:
    """A first-generation ID number: 15 digits, the birth year in two (still on old records)."""
    born = date(1950, 1, 1) + timedelta(days=random.randrange(18000))
    return f"{district}{born:%y%m%d}{random.randrange(1000):03d}"


def phone() -> str:
    return f"1{random.choice('3456789')}{random.randrange(10**9):09d}"


# How a phone is typed into free text: the brief's `+86 138 1234 5678` and its cousins.
PHONE_FORMS = (
    lambda p: f"+86 {p[:3]} {p[3:7]} {p[7:]}",
    lambda p: f"0086-{p}",
    lambda p: f"{p[:3]}-{p[3:7]}-{p[7:]}",
    lambda p: p,
)


@dataclass
class Secrets:
    """Every plaintext a test gave the platform, with where it was put (for the leak report)."""
    id_numbers: dict[str, str] = field(default_factory=dict)  # number -> where
    phones: dict[str, str] = field(default_factory=dict)  # 11 digits -> where

    def id_number(self, where: str, district: str = "370113", ending_in_x: bool = False) -> str:
        number = id_number(district, ending_in_x)
        self.id_numbers[number] = where
        return number

    def legacy_id_number(self, where: str, district: str = "370113") -> str:
        number = legacy_id_number(district)
        self.id_numbers[number] = where
        return number

    def phone(self, where: str) -> str:
        number = phone()
        self.phones[number] = where
        return number

    def free_text(self, where: str, opening: str = "备注") -> str:
        """Free text holding an 18-character ID number (ending in X, in lower case), a legacy
        15-digit one and two phones, `+86 1xx xxxx xxxx` and another form."""
        second_form = random.choice(PHONE_FORMS[1:])
        return (f"{opening}：身份证{self.id_number(where, ending_in_x=True).lower()}，"
                f"老身份证{self.legacy_id_number(where)}，联系电话{PHONE_FORMS[0](self.phone(where))}，"
                f"备用{second_form(self.phone(where))}。")

    def searched_for(self) -> dict[str, tuple[str, str]]:
        """What the search looks for: {text: (pattern, the secret's label)}. Each number whole
        (an X in either case) and the part of it its mask hides (all but the last four; for a
        legacy number, whose hidden part has only five digits of its own, not inside a longer
        run of digits such as a credit code's); each phone's digits."""
        needles = {}
        for number, where in self.id_numbers.items():
            label = f"ID number {number} ({where})"
            hidden = re.escape(number[:-4]) + (r"(?!\d)" if len(number) == 15 else "")
            for text, pattern in ((number, re.escape(number)), (number.lower(), re.escape(number.lower())),
                                  (number[:-4], hidden)):
                needles[text] = (pattern, label)
        for digits, where in self.phones.items():
            needles[digits] = (re.escape(digits), f"phone {digits} ({where})")
        return needles

    def __len__(self):
        return len(self.id_numbers) + len(self.phones)


# Digit groups split by spaces or dashes (or their URL encoding) are joined before the search,
# so that "+86 138 1234 5678" is found as 13812345678 wherever it is written like that.
_SPLIT_DIGITS = re.compile(r"(?<=\d)(?:[\s-]|%20|\\u00a0)+(?=\d)")


def leaks(places: dict[str, str], secrets: Secrets) -> list[tuple[str, str]]:
    """(place, secret) for every secret found in a place's text."""
    needles = secrets.searched_for()
    pattern = re.compile("|".join(p for _, (p, _) in sorted(needles.items(), key=lambda item: -len(item[0]))))
    found = set()
    for place, text in places.items():
        for haystack in (text, _SPLIT_DIGITS.sub("", text)):
            found.update((place, needles[match][1]) for match in pattern.findall(haystack))
    return sorted(found)


def dumped(value) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


# ---- HTTP responses ------------------------------------------------------------------------


class Recorder:
    """Every response received through its clients, read in full."""

    def __init__(self, platform):
        self.platform = platform
        self.responses: list[httpx.Response] = []

    def _keep(self, response: httpx.Response) -> None:
        response.read()
        self.responses.append(response)

    def client(self, token: str) -> httpx.Client:
        client = self.platform.client(token)
        client.event_hooks["response"].append(self._keep)
        return client

    def token(self, username: str, password: str) -> str:
        with httpx.Client(base_url=f"{self.platform.gateway_url}/api/v1", timeout=10,
                          event_hooks={"response": [self._keep]}) as client:
            response = client.post("/auth/token", json={"username": username, "password": password})
        response.raise_for_status()
        return response.json()["access_token"]

    @staticmethod
    def text(response: httpx.Response) -> str:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        return (f"{response.request.method} {response.request.url} -> {response.status_code}\n{headers}\n\n"
                + response.content.decode("utf-8", errors="replace"))


# ---- the WebSocket -------------------------------------------------------------------------


class SocketListener:
    """A WebSocket client of /api/v1/events/ws subscribed to everything, reading in a thread and
    keeping every message as it came (text)."""

    def __init__(self, platform, token: str):
        from websockets.sync.client import connect

        url = platform.gateway_url.replace("http://", "ws://") + f"/api/v1/events/ws?access_token={token}"
        self.texts: list[str] = []
        self.error: Exception | None = None
        self.connection = connect(url, open_timeout=10, max_size=None)
        self.connection.send(json.dumps({"subscribe": {}}))
        first = self.connection.recv(timeout=10)
        assert "subscribed" in json.loads(first), first
        self.texts.append(first)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for text in self.connection:
                self.texts.append(text)
        except Exception as exc:  # closed at the end, or an error the waits report
            self.error = exc

    def events(self) -> list[dict]:
        return [m["event"] for m in map(json.loads, list(self.texts)) if "event" in m]

    def wait_for(self, predicate, timeout: float = 20) -> list[dict]:
        def found():
            if self.error:
                raise self.error
            return [e for e in self.events() if predicate(e)]
        return wait_for(found, timeout=timeout, what="events on the WebSocket")

    def close(self):
        with contextlib.suppress(Exception):
            self.connection.close()


# ---- databases at rest ---------------------------------------------------------------------

_SEALED = re.compile(r"^v1:([A-Za-z0-9+/=]+)$")


def database_texts(mongodb_uri: str, databases: dict[str, str]) -> tuple[dict[str, str], list[bytes]]:
    """{"<service> db <collection>": every document of it as JSON}, and the raw bytes under every
    sealed value ("v1:" + base64, service_kit.pii), for a search that base64 would hide from."""
    import pymongo

    texts, sealed = {}, []

    def collect(value):
        if isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)
        elif isinstance(value, str) and (match := _SEALED.match(value)):
            with contextlib.suppress(binascii.Error, ValueError):
                sealed.append(base64.b64decode(match.group(1), validate=True))

    client = pymongo.MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    try:
        for service, database in databases.items():
            db = client[database]
            names = db.list_collection_names()
            assert names, f"the {service} database {database} holds nothing"
            for name in sorted(names):
                documents = list(db[name].find())
                for document in documents:
                    collect(document)
                texts[f"{service} db {name}"] = "\n".join(map(dumped, documents))
    finally:
        client.close()
    return texts, sealed


def storage_texts(storage: Path) -> dict[str, str]:
    """The database server's files (SecantusDB's journal, oplog, documents), bytes as latin-1:
    what was written, including what has been overwritten or deleted since."""
    return {f"database file {path.name}": path.read_bytes().decode("latin-1")
            for path in sorted(storage.iterdir()) if path.is_file()}


# ---- the broker ----------------------------------------------------------------------------


def vhost_queues(amqp_uri: str) -> dict[str, int]:
    """Every queue of the vhost and the messages ready in it."""
    vhost = amqp_uri.rsplit("/", 1)[1] or "/"
    rows = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages_ready"],
                          capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    return {name: int(count) for name, count in (row.split("\t") for row in rows if "\t" in row)
            if count.isdigit()}


@dataclass
class QueuedMessage:
    queue: str
    message_id: str | None
    headers: dict
    body: str

    def platform_text(self) -> str:
        """What the platform wrote onto the message (where, why, which attempt), its properties."""
        return f"{self.queue} {self.message_id} {dumped(self.headers)}"


def peek(amqp_uri: str, queue_name: str, limit: int = 1000) -> list[QueuedMessage]:
    """The messages ready in a queue, taken unacknowledged and given back when the channel
    closes (as service_kit.topology.list_dead_letters peeks)."""
    from kombu import Connection, Queue

    messages = []
    with Connection(amqp_uri) as connection:
        channel = connection.channel()
        queue = Queue(queue_name, no_declare=True)(channel)
        while len(messages) < limit:
            message = queue.get(no_ack=False, accept=None)
            if message is None:
                break
            body = message.body.decode("utf-8", errors="replace") if isinstance(message.body, bytes) \
                else str(message.body)
            messages.append(QueuedMessage(queue_name, message.properties.get("message_id"),
                                          dict(message.headers or {}), body))
        with contextlib.suppress(Exception):
            channel.close()
    return messages


def publish_raw(amqp_uri: str, exchange: str, routing_key: str, body: bytes | str, message_id: str) -> None:
    """A message on an events exchange as a broken publisher would put it there."""
    from kombu import Connection, Exchange, Producer

    with Connection(amqp_uri) as connection:
        producer = Producer(connection.channel(), exchange=Exchange(exchange, type="topic", durable=True,
                                                                      no_declare=True))
        producer.publish(body if isinstance(body, bytes) else body.encode(), routing_key=routing_key,
                         content_type="application/json", content_encoding="utf-8", message_id=message_id,
                         delivery_mode=2)


def cloud_event(source: str, type: str, data: dict, **extra) -> dict:
    return {"specversion": "1.0", "id": uuid.uuid4().hex, "source": source, "type": type,
            "time": "2024-05-01T08:00:00+00:00", "datacontenttype": "application/json", "data": data, **extra}
