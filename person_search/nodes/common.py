"""What every node shares: parameters from the core config dataclasses, QoS, lifecycle, diagnostics, main()."""

from __future__ import annotations

import dataclasses
import gc
import logging
import signal
import sys
import time
from collections import deque
from typing import Any, Callable, Dict, Optional, Type

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions

from person_search.core.config import ConfigError, runtime_fields, section_from_dict

# Every publisher and subscription takes this: users tune QoS from the parameter file,
# e.g. `qos_overrides./cam0/image_raw.subscription.reliability: reliable`.
QOS_OVERRIDES = QoSOverridingOptions.with_default_policies()


def sensor_qos(reliable: bool = False) -> QoSProfile:
    """Image streams: best effort, keep last 1 (the newest frame wins); reliable when asked."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


RELIABLE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
# services: many clients at once (a depth-10 history, the rclpy default, loses requests and
# responses when more than 10 calls are in flight: measured with benchmarks/bench_load.py)
SERVICE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE)
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


def publisher(node: Node, msg_type, topic: str, qos: QoSProfile, **kw):
    """Create a publisher whose QoS can be overridden from parameters."""
    return node.create_publisher(msg_type, topic, qos, qos_overriding_options=QOS_OVERRIDES, **kw)


def subscription(node: Node, msg_type, topic: str, callback, qos: QoSProfile, *, stats: "StageStats" = None, **kw):
    """Create a subscription whose QoS can be overridden from parameters.

    With ``stats`` (the stage's input), every message's arrival and the time its publisher
    sent it are given to `StageStats` first, so that the stage's queue wait is measured.
    """
    if stats is not None:
        callback = stats.timed(callback)
    return node.create_subscription(msg_type, topic, callback, qos, qos_overriding_options=QOS_OVERRIDES, **kw)


def _message_info_supported() -> bool:
    """Tell whether rclpy hands subscription callbacks the message info (Iron and newer; not Humble)."""
    from rclpy.subscription import Subscription
    kinds = getattr(Subscription, "CallbackType", None)
    return kinds is not None and hasattr(kinds, "WithMessageInfo")


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


def quantiles_ms(key: str, data) -> Dict[str, str]:
    """``{key}_p50_ms``, ``_p95_ms``, ``_p99_ms`` (nearest rank) of seconds; "0.0" when empty."""
    q = sorted(data)
    out = {}
    for name, p in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        out[f"{key}_{name}_ms"] = f"{1e3 * q[min(len(q) - 1, int(p * len(q)))]:.1f}" if q else "0.0"
    return out


class StageStats:
    """Rate, latency and drops of one stage, published on /diagnostics: one clock for all.

    Every figure is on the node clock (the wall clock unless ``use_sim_time``), the clock
    the camera stamps frames with at capture:

    * ``age``: capture -> this stage's output leaves (now - header stamp); at the index,
      capture -> searchable;
    * ``wait``: the input's queue wait, from the moment the upstream stage sent the message
      (DDS source timestamp) to the start of this stage's callback (transport + the time it
      sat in the subscription's queue); "n/a" on Humble, whose rclpy does not give callbacks
      the message info;
    * ``latency`` (work): the stage's own time, from the start of its callback to its output;
    * ``samples(key, s)``: more distributions (the embedder's first seen -> searchable).

    Each as p50 / p95 / p99 over the last ``window`` outputs.
    """

    def __init__(self, node: Node, name: str, period_s: float = 2.0, window: int = 600):
        self._node = node
        self._name = f"{node.get_namespace().rstrip('/')}/{node.get_name()}: {name}"
        self._window = window
        self._times = deque(maxlen=window)
        self._lat = deque(maxlen=window)
        self._age = deque(maxlen=window)
        self._wait = deque(maxlen=window)
        self._more: Dict[str, deque] = {}
        self._arrived_ns = 0
        self._sent_ns = 0
        self._timed = False
        self.count = 0
        self.drops = 0
        self.errors = 0
        self.extra: Dict[str, Any] = {}
        self._pub = node.create_publisher(DiagnosticArray, "diagnostics", 10)
        node.create_timer(period_s, self.publish)

    def timed(self, callback: Callable) -> Callable:
        """Wrap a subscription callback: note the message's arrival and send time, then call it."""
        self._timed = True
        if _message_info_supported():
            def with_info(msg, info):
                self.begin(int(info.get("source_timestamp", 0) or 0) if isinstance(info, dict) else 0)
                callback(msg)
            return with_info

        def without_info(msg):
            self.begin(0)
            callback(msg)
        return without_info

    def begin(self, sent_ns: int = 0) -> None:
        """Mark the arrival of one input message (``sent_ns``: when its publisher sent it, 0 = unknown)."""
        self._arrived_ns = time.time_ns()  # DDS source timestamps are on the system clock
        self._sent_ns = sent_ns

    def sample(self, key: str, seconds: float) -> None:
        """Add one value (s) to the distribution ``key`` (published as ``key_p50_ms`` etc.)."""
        self._more.setdefault(key, deque(maxlen=self._window)).append(max(0.0, seconds))

    def tick(self, latency_s: Optional[float] = None, stamp=None) -> None:
        """Count one output; ``stamp`` (builtin_interfaces/Time of the source frame) gives its age.

        In a callback wrapped by `timed`, the work is measured from the message's arrival
        (``latency_s`` is then ignored) and the queue wait is recorded.
        """
        self.count += 1
        self._times.append(time.monotonic())
        if self._arrived_ns:
            self._lat.append(max(0.0, (time.time_ns() - self._arrived_ns) / 1e9))
            if self._sent_ns:
                self._wait.append(max(0.0, (self._arrived_ns - self._sent_ns) / 1e9))
            self._arrived_ns = self._sent_ns = 0
        elif latency_s is not None:
            self._lat.append(latency_s)
        if stamp is not None:
            now = self._node.get_clock().now().nanoseconds
            self._age.append(max(0.0, (now - stamp.sec * 1_000_000_000 - stamp.nanosec) / 1e9))

    def rate(self) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def values(self) -> Dict[str, str]:
        """Return what `publish` sends, as strings."""
        values = {"rate_hz": f"{self.rate():.2f}", "count": str(self.count), "drops": str(self.drops),
                  "errors": str(self.errors)}
        values.update(quantiles_ms("latency", self._lat))
        values.update(quantiles_ms("age", self._age))
        if self._timed:
            values.update(quantiles_ms("wait", self._wait) if self._wait else
                          {f"wait_{p}_ms": "n/a" for p in ("p50", "p95", "p99")})
        for key, data in self._more.items():
            values.update(quantiles_ms(key, data))
        values.update({k: str(v) for k, v in self.extra.items()})
        return values

    def publish(self) -> None:
        values = self.values()
        st = DiagnosticStatus(level=DiagnosticStatus.OK if not self.errors else DiagnosticStatus.WARN,
                              name=self._name, message="running", hardware_id=self._node.get_name(),
                              values=[KeyValue(key=k, value=v) for k, v in values.items()])
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.status = [st]
        self._pub.publish(msg)


class RosLogHandler(logging.Handler):
    """Forward the core's ``logging`` records to a node logger (so they reach /rosout and honour --log-level)."""

    def __init__(self, logger):
        super().__init__()
        self._logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"[{record.name}] {record.getMessage()}"
            if record.levelno >= logging.ERROR:
                self._logger.error(text)
            elif record.levelno >= logging.WARNING:
                self._logger.warning(text)
            elif record.levelno >= logging.INFO:
                self._logger.info(text)
            else:
                self._logger.debug(text)
        except Exception:  # noqa: BLE001 - logging must never break the node
            self.handleError(record)


def forward_core_logging(node: Node) -> None:
    """Send ``person_search.*`` log records to ``node``'s logger, at the node's log level."""
    core = logging.getLogger("person_search")
    for h in [h for h in core.handlers if isinstance(h, RosLogHandler)]:
        core.removeHandler(h)
    core.addHandler(RosLogHandler(node.get_logger()))
    # rcutils severities (DEBUG=10 ... FATAL=50) use the same numbers as Python's levels
    core.setLevel(int(node.get_logger().get_effective_level()))
    core.propagate = False


class ManagedNode(LifecycleNode):
    """A lifecycle node that holds a model.

    configure -> :meth:`load` (build the model; a failure leaves the node unconfigured with
    the reason logged), activate -> :meth:`start` once (create the input subscriptions)
    and process, deactivate -> stop processing (input is dropped), cleanup / shutdown ->
    :meth:`unload` (free the model). With the ``autostart`` parameter (default true)
    :func:`run_node` takes the node to active at start, so nothing waits for a transition.
    """

    def __init__(self, name: str):
        super().__init__(name)
        self.declare_parameter("autostart", True, ParameterDescriptor(
            description="configure and activate at start (false: wait for lifecycle transitions)", read_only=True))
        self.active = False
        self.error = ""
        self._started = False

    def load(self) -> None:
        """Build the model (configure)."""

    def start(self) -> None:
        """Create the input subscriptions (first activate)."""

    def unload(self) -> None:
        """Free the model (cleanup, shutdown)."""

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self.load()
        except (ConfigError, ValueError, RuntimeError, FileNotFoundError) as exc:
            self.error = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.error = ""
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        if not self._started:
            self.start()
            self._started = True
        self.active = True
        self.get_logger().info("active")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self.active = False
        self.get_logger().info("inactive: input is dropped until activated")
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self.active = False
        self.unload()
        gc.collect()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.active = False
        self.unload()
        return TransitionCallbackReturn.SUCCESS


def _stop_on_signals() -> None:
    """Turn SIGINT and SIGTERM into KeyboardInterrupt, also while a model is still loading.

    rclpy's own handlers only wake the executor; a node busy loading a model ignored both
    signals for over 10 s. A Python handler runs as soon as the current C call returns.
    """
    def handler(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def _exit_now(code: int) -> None:
    """End the process with ``code`` after the atexit handlers, skipping the interpreter's teardown.

    The node has closed its resources by then (snapshot saved, node destroyed, rclpy shut
    down); tearing down torch, OpenVINO and ONNX Runtime module by module took another 3-7 s
    on 2 busy cores, during which a stopped graph still had processes (and a launch
    escalated to SIGTERM after 5 s).
    """
    import atexit
    import os
    atexit._run_exitfuncs()  # logging, coverage and the like still run
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def run_node(factory: Callable[[], Node], *, multithreaded: bool = False, threads: int = 4, args=None,
             exit_process: bool = True) -> int:
    """Entry point of every node: init, build, (auto)start, spin, shut down cleanly (Humble compatible).

    Exits 0 on SIGINT / SIGTERM (within ~0.25 s while spinning), 2 when the node cannot start.
    With ``exit_process`` (the default) it ends the process itself once everything is
    closed (:func:`_exit_now`); else it returns the exit code.
    """
    code = _run_node(factory, multithreaded=multithreaded, threads=threads, args=args)
    if exit_process:
        _exit_now(code)
    return code


def _run_node(factory: Callable[[], Node], *, multithreaded: bool, threads: int, args) -> int:
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    _stop_on_signals()
    node = None
    code = 0
    try:
        try:
            node = factory()
            forward_core_logging(node)
            if isinstance(node, ManagedNode) and node.get_parameter("autostart").value:
                if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                    raise RuntimeError(node.error or "configure failed")
                node.trigger_activate()
        except (ConfigError, ValueError, RuntimeError, FileNotFoundError) as exc:
            # bad parameters, missing weights, unreadable source: one clear line, non-zero exit
            print(f"[person_search] cannot start: {exc}", file=sys.stderr, flush=True)
            return 2
        if multithreaded:
            from rclpy.executors import MultiThreadedExecutor
            executor = MultiThreadedExecutor(num_threads=threads)
        else:
            from rclpy.executors import SingleThreadedExecutor
            executor = SingleThreadedExecutor()
        executor.add_node(node)
        # short waits so that the Python signal handler runs promptly
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.25)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:  # noqa: BLE001 - shutdown must go on
                    print(f"[person_search] error while closing: {exc}", file=sys.stderr)
            node.destroy_node()
        rclpy.try_shutdown()
    return code


def when_downstream_ready(node: Node, publisher, wait_s: float, start: Callable[[], None]) -> None:
    """Call ``start`` (which subscribes to the stage's input) once ``publisher`` has a subscriber.

    A stage that took its input before its consumer was up would drop the first seconds of
    a file source. After ``wait_s`` it starts anyway (live sources must not stall), and logs why.
    """
    t0 = time.monotonic()
    state = {"timer": None}

    def check():
        ready = publisher.get_subscription_count() > 0
        if ready or time.monotonic() - t0 >= wait_s:
            node.destroy_timer(state["timer"])
            if not ready:
                node.get_logger().warning(
                    f"no subscriber on {publisher.topic_name} after {wait_s:.0f} s; starting anyway")
            start()

    state["timer"] = node.create_timer(0.1, check)
