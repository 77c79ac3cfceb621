"""A nameko service whose event handler fails a chosen number of times: it exercises the
kit's retry, backoff and dead-letter path for real (started as a process by the tests)."""

import eventlet

eventlet.monkey_patch()

import sys  # noqa: E402

from service_kit.chassis import runner  # noqa: E402
from service_kit.chassis.base import ChassisService  # noqa: E402
from service_kit.chassis.consumer import integration_event_handler  # noqa: E402
from service_kit.config import env_config  # noqa: E402
from service_kit.store import utc_now  # noqa: E402


class FlakyService(ChassisService):
    name = "flaky"

    @integration_event_handler("member", "member.updated")
    def on_member_updated(self, event):
        attempts = self.store.db.attempts
        attempts.update_one({"_id": event.id}, {"$push": {"at": utc_now()}}, upsert=True)
        tried = len(attempts.find_one({"_id": event.id})["at"])
        if tried <= event.data.get("fail_times", 0):
            raise RuntimeError(f"deliberate failure {tried}")

        def work(uow):
            uow.db.applied.update_one({"_id": event.id}, {"$inc": {"times": 1}}, upsert=True, session=uow.session)

        self.store.apply_event("on_member_updated", event, work)


if __name__ == "__main__":
    runner.run(FlakyService, env_config("flaky", default_http_port=8099), args=sys.argv[1:])
