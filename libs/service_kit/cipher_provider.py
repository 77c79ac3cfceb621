"""The field cipher as a nameko dependency. Apart from pii.py, which the gateway uses too and
which therefore imports no nameko."""

from nameko.extensions import DependencyProvider

from .pii import KEY_ENV, FieldCipher, parse_key


class FieldCipherProvider(DependencyProvider):
    """Gives workers the service's FieldCipher, keyed from config[FIELD_ENCRYPTION_KEY]."""

    def setup(self):
        self.cipher = FieldCipher(parse_key(self.container.config.get(KEY_ENV)))

    def get_dependency(self, worker_ctx):
        return self.cipher
