"""The few exceptions shared across layers."""

from __future__ import annotations


class ConfigError(Exception):
    """A bad configuration value: names the key and, where known, the file and line."""

    def __init__(self, message: str, key: str | None = None, line: int | None = None, source: str = ""):
        self.key, self.line, self.source, self.message = key, line, source, message
        where = source + (f":{line}" if line is not None else "")
        super().__init__((f"{where}: " if where else "") + (f"{key}: " if key else "") + message)


class ConfigErrors(ConfigError):
    """Every error found in one file (`check-config`), the first as the message's first line."""

    def __init__(self, errors: list[ConfigError]):
        first = errors[0]
        super().__init__(first.message, first.key, first.line, first.source)
        self.errors = errors
        self.args = ("\n".join(str(e) for e in errors),)
