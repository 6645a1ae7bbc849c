"""The operator console: a web page and JSON API over the graph's public ROS interfaces.

* :mod:`.config` -- :class:`WebConfig`, the console's settings (the ``web.*`` parameters).
* :mod:`.security` -- bind / token rules, constant-time token check.
* :mod:`.params` -- validation of the API's query parameters (ROS-free).
* :mod:`.store` -- in-memory image cache, track timelines, stage health (ROS-free).
* :mod:`.bridge` -- the rclpy side: /query_person, /diagnostics, overlays, person_crops.
* :mod:`.app` -- the aiohttp application (routes, middlewares).
* :mod:`.server` -- run the bridge and the HTTP server until a signal.

The page itself is ``static/`` (HTML, one script, one style sheet): no build step, no CDN.
"""
