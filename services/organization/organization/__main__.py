"""`python -m organization` runs the service; `python -m organization migrate` prepares the
database indexes and broker topology and exits."""

import eventlet

eventlet.monkey_patch()  # before anything else imports socket or threading

from service_kit import runner  # noqa: E402
from service_kit.config import env_config  # noqa: E402
from service_kit.pii import KEY_ENV, key_from_environment  # noqa: E402

from .migrate import migrate  # noqa: E402
from .service import OrganizationService  # noqa: E402

config = env_config("organization", default_http_port=8081, JOINT_ORGANIZATION_MAX_UNITS="5")
config[KEY_ENV] = key_from_environment()  # no key, no start: instructors' phones are never stored in clear
runner.run(OrganizationService, config, migrate)
