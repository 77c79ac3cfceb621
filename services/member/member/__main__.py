"""`python -m member` runs the service; `python -m member migrate` prepares the database
indexes and broker topology and exits."""

import eventlet

eventlet.monkey_patch()  # before anything else imports socket or threading

from service_kit import runner  # noqa: E402
from service_kit.config import env_config  # noqa: E402
from service_kit.pii import KEY_ENV, key_from_environment  # noqa: E402

from .migrate import migrate  # noqa: E402
from .service import MemberService  # noqa: E402

config = env_config("member", default_http_port=8082, TRANSFER_LETTER_VALID_DAYS="30")
config[KEY_ENV] = key_from_environment()  # no key, no start: personal data is never stored in clear
runner.run(MemberService, config, migrate)
