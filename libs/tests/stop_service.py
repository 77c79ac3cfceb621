"""A nameko service whose RPC works for a while, then commits a write and an outbox event:
test_graceful_stop.py stops it with signals while calls are in flight and counts what was
written, answered and published. Started as a process, as production starts a service."""

import eventlet

eventlet.monkey_patch()

import os  # noqa: E402

from nameko.timer import timer  # noqa: E402

from platform_contracts.envelope import CloudEvent  # noqa: E402
from service_kit.chassis import runner  # noqa: E402
from service_kit.chassis.base import ChassisService  # noqa: E402
from service_kit.chassis.entrypoints import rpc  # noqa: E402
from service_kit.config import env_config  # noqa: E402

NAME = "stopper"


class StopperService(ChassisService):
    name = NAME

    @rpc
    def write(self, key, seconds):
        """Work for `seconds`, then commit one `writes` document and one event. A plain write,
        not a command with an id: a call executed twice shows as two documents."""
        # Outside the transaction: which calls a worker took up, and how often.
        self.store.db.started.insert_one({"key": key, "pid": os.getpid()})
        eventlet.sleep(seconds)  # the work itself (not a wait): in flight when the signal comes

        def work(uow):
            uow.db.writes.insert_one({"key": key, "pid": os.getpid()}, session=uow.session)
            uow.events.append(CloudEvent(source=NAME, type="unit.updated", subject=key, data={}))

        self.store.transaction(work)
        return {"key": key, "pid": os.getpid()}

    @timer(interval=0.2)
    def tick(self):
        # A timer that keeps firing through the load: a stop must end it too.
        self.store.db.ticks.update_one({"_id": os.getpid()}, {"$inc": {"n": 1}}, upsert=True)


if __name__ == "__main__":
    runner.run(StopperService, env_config(NAME, default_http_port=8097))
