"""A nameko service whose RPC holds a worker for as long as it is told: the tests fill the
worker pool with it and check that /healthz, /readyz and /metrics still answer (they are
served outside the pool). Started as a process by test_operations_http.py."""

import eventlet

eventlet.monkey_patch()

import os  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

from service_kit.chassis import runner  # noqa: E402
from service_kit.chassis.base import ChassisService  # noqa: E402
from service_kit.chassis.entrypoints import query, rpc  # noqa: E402
from service_kit.config import env_config  # noqa: E402


class BusyService(ChassisService):
    name = "busy"

    @rpc
    def hold(self, seconds):
        # One file per worker that started: the test counts the workers in use.
        Path(os.environ["BUSY_MARKER_DIR"], uuid.uuid4().hex).touch()
        eventlet.sleep(seconds)  # the work itself (not a wait): it holds a worker while the test probes
        return "done"

    @query(body=None)
    def count_things(self, actor=None):
        """A read of the service's database, through the chassis as every service reads."""
        return self.store.db.things.count_documents({})


if __name__ == "__main__":
    runner.run(BusyService, env_config("busy", default_http_port=8098), args=sys.argv[1:])
