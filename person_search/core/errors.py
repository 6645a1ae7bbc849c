"""The error a user fixes by changing the configuration (one clear line, never a traceback)."""


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range."""
