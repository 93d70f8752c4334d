"""User-facing errors: reported by the CLI as one line and a non-zero exit, never a traceback."""

from jsonargparse import ArgumentError


class ConfigError(ValueError):
    """A bad value in the user's configuration (the message names the key and what is expected)."""


def require(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless condition holds."""
    if not condition:
        raise ConfigError(message)


def user_error(error: BaseException) -> BaseException | None:
    """The bad input behind ``error`` (jsonargparse wraps constructor errors), if it is one."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ConfigError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return error if isinstance(error, ArgumentError) else None
