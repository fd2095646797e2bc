"""User-facing errors: each message says what is wrong and where."""


class WalsrecError(Exception):
    """Base class for errors meant to be shown to a user as one clear message."""


class DataError(WalsrecError, ValueError):
    """Input data is unusable: the message names the file, line and field where known."""


class ConfigError(WalsrecError, ValueError):
    """A configuration value is invalid: the message names the key and the allowed values."""
