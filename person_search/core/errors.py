"""The errors a user fixes by changing the configuration or the model files (one clear line, never a traceback).

Neutral ground: every part of the core raises them, none has to import another part for them.
"""


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


class WeightsError(RuntimeError):
    """Model weights (CLIP, detector, re-id) are missing, unreadable or cannot be fetched (offline)."""
