"""User-facing errors: reported by the CLI as one line and a non-zero exit, never a traceback."""


class ConfigError(ValueError):
    """A bad value in the user's configuration (the message names the key and what is expected)."""


def require(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless condition holds."""
    if not condition:
        raise ConfigError(message)
