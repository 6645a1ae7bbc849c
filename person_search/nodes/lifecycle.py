"""Lifecycle of the nodes that hold a model (:class:`ManagedNode`), and starting a stage once its consumer is up."""

from __future__ import annotations

import gc
import time
from typing import Callable

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.node import Node

from person_search.core.config import ConfigError


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

    def destroy_node(self) -> None:
        """Also let go of the lifecycle state machine (rclpy's LifecycleNode does not).

        It holds the node's handle, which holds the context: the DDS participant and its
        32 MiB shared-memory segment in /dev/shm then outlived ``destroy_node`` and the
        context's destruction, and stayed on the machine after the process exited.
        """
        super().destroy_node()
        machine = getattr(self, "_state_machine", None)
        if machine is not None:
            machine.destroy_when_not_in_use()


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
