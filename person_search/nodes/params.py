"""Node parameters from the core config dataclasses (``section.field``), runtime changes, ``ros.*`` settings."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional, Type

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node

from person_search.core.config import ConfigError, runtime_fields, section_from_dict


def _declare_fields(node: Node, prefix: str, cls: Type, values: Dict[str, Any], key: str = "") -> None:
    """Declare the fields of ``cls`` as ``prefix.field`` (nested sections as ``prefix.sub.field``)."""
    default = cls()
    for f in dataclasses.fields(cls):
        value = getattr(default, f.name)
        name, sub_key = f"{prefix}.{f.name}", f"{key}{f.name}"
        if dataclasses.is_dataclass(value):
            _declare_fields(node, name, type(value), values, sub_key + ".")
            continue
        # dynamic typing: YAML writes 1 for 1.0 and 0 for the V4L2 source "0"; the dataclass
        # coercion checks the type and names the parameter when it is wrong
        desc = ParameterDescriptor(description=f.metadata.get("description") or f.name,
                                   read_only=not f.metadata.get("runtime"),
                                   dynamic_typing=True)
        rng = f.metadata.get("range")
        if rng is not None:  # shown by `ros2 param describe`; checked by validate()
            desc.additional_constraints = f"range [{rng[0]:g}, {rng[1]:g}]"
            if isinstance(value, float):
                desc.floating_point_range = [FloatingPointRange(from_value=float(rng[0]), to_value=float(rng[1]))]
            elif isinstance(value, int):
                desc.integer_range = [IntegerRange(from_value=int(rng[0]), to_value=int(rng[1]), step=1)]
        try:
            node.declare_parameter(name, value, desc)
        except Exception as exc:  # noqa: BLE001 - rclpy's parameter exceptions are not ValueErrors
            raise ConfigError(f"parameter {name}: {exc}") from exc
        values[sub_key] = node.get_parameter(name).value


def declare_section(node: Node, section: str, cls: Type, on_change: Optional[Callable[[], None]] = None) -> Any:
    """Declare every field of a config dataclass as ``section.field`` and build it back.

    Values come from the parameter file / command line; defaults, descriptions and ranges
    from the dataclass fields (``config.param``: the one source of truth); bad values raise
    ConfigError. Fields marked ``param(runtime=True)`` can be changed while the node runs
    (``ros2 param set``): the new value is validated with the whole section, refused with
    the reason, or written into the returned config object (which the core objects share)
    and ``on_change`` is called. The others are read-only.
    """
    values: Dict[str, Any] = {}
    _declare_fields(node, section, cls, values)
    cfg = section_from_dict(cls, values, section)
    cfg.validate()
    if runtime_fields(cls):
        node.add_on_set_parameters_callback(_runtime_setter(node, section, cfg, on_change))
    return cfg


def _runtime_setter(node: Node, section: str, cfg: Any, on_change: Optional[Callable[[], None]]):
    """Return the set-parameters callback that validates and applies ``section.*`` changes."""
    def on_set(params) -> SetParametersResult:
        changed = {p.name.split(".", 1)[1]: p.value for p in params if p.name.startswith(section + ".")}
        if not changed:
            return SetParametersResult(successful=True)
        values = dataclasses.asdict(cfg)  # nested sections as dicts, as section_from_dict reads them
        values.update(changed)
        try:
            new = section_from_dict(type(cfg), values, section)
            new.validate()
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        for name in changed:
            setattr(cfg, name, getattr(new, name))
        if on_change is not None:
            on_change()
        node.get_logger().info("set " + ", ".join(f"{section}.{k}={getattr(cfg, k)!r}" for k in changed))
        return SetParametersResult(successful=True)
    return on_set


def declare_ros(node: Node, **defaults: Any) -> Dict[str, Any]:
    """Declare node-only settings under ``ros.`` (QoS choices, rates) and return their values."""
    out = {}
    for key, (value, help_text) in defaults.items():
        node.declare_parameter(f"ros.{key}", value, ParameterDescriptor(description=help_text, read_only=True))
        out[key] = node.get_parameter(f"ros.{key}").value
    return out
