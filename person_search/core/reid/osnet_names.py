"""OSNet width names, importable without torch (the config checks them)."""

ARCHS = ("osnet_x0_25", "osnet_x0_5", "osnet_x0_75", "osnet_x1_0")
