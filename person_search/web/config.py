"""Settings of the operator console (declared as ``web.*`` parameters on the web node)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from person_search.core.config import ConfigError, param

DEFAULT_PORT = 8080


@dataclass
class WebConfig:
    """The operator console's server, limits and caches."""

    host: str = param("127.0.0.1", "address to bind; anything but loopback needs a token "
                                   "(PERSON_SEARCH_WEB_TOKEN)")
    port: int = param(DEFAULT_PORT, "TCP port", range=(1, 65535))
    query_timeout_s: float = param(15.0, "a search that takes longer gets a 504 error", range=(0.5, 300.0))
    service_wait_s: float = param(2.0, "how long a search waits for /query_person to appear before a 503",
                                  range=(0.0, 60.0))
    stale_s: float = param(6.0, "a stage whose diagnostics are older than this is shown as stalled",
                           range=(1.0, 3600.0))
    image_cache_mb: float = param(64.0, "memory for the crops and frames of search answers", range=(1.0, 4096.0))
    timeline_cache_mb: float = param(64.0, "memory for the track timelines (crops and frames from person_crops)",
                                     range=(0.0, 4096.0))
    timeline_points: int = param(16, "crops kept per track, spread over its life", range=(2, 1000))
    tile_width: int = param(640, "live tiles are scaled down to this width (px)", range=(64, 4096))

    def validate(self) -> None:
        """Raise ConfigError naming the first ``web.*`` value out of its range."""
        for f in dataclasses.fields(self):
            rng = f.metadata.get("range")
            v = getattr(self, f.name)
            if rng and not (rng[0] <= v <= rng[1]):
                raise ConfigError(f"web.{f.name} must be in [{rng[0]:g}, {rng[1]:g}], got {v!r}")
        if not self.host.strip():
            raise ConfigError("web.host must not be empty")
