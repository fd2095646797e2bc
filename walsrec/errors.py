"""User-facing errors: each message says what is wrong and where."""


class WalsrecError(Exception):
    """Base class for errors meant to be shown to a user as one clear message."""


class DataError(WalsrecError, ValueError):
    """Input data is unusable: the message names the file, line and field where known."""


class ConfigError(WalsrecError, ValueError):
    """A configuration value is invalid: the message names the key and the allowed values."""


def reject_unknown_keys(section: str, values: object, config_class: type) -> None:
    """Raise ConfigError naming every key of `values` that is not a field of `config_class`.

    Args:
        section: how the message names the section, e.g. "WALS config" or "blend".
        values: the mapping read from a config file.
        config_class: the dataclass whose fields are the valid keys.
    """
    import dataclasses

    valid = [field.name for field in dataclasses.fields(config_class)]
    unknown = sorted(str(key) for key in values if key not in valid)
    if unknown:
        raise ConfigError(
            f"unknown {section} key(s) {', '.join(unknown)}; valid keys are {', '.join(valid)}"
        )
