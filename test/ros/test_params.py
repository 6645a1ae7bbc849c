"""Config sections declared as ROS parameters: nested sections flattened, metadata as descriptors."""

from __future__ import annotations

import pytest
import rclpy
from rclpy.parameter import Parameter

from person_search.core.config import ConfigError, EncoderConfig
from person_search.nodes.params import declare_section


@pytest.fixture
def make_node():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    nodes = []

    def make(**overrides):
        params = [Parameter(k, value=v) for k, v in overrides.items()]
        node = rclpy.create_node(f"params_{len(nodes)}", context=ctx, parameter_overrides=params,
                                 start_parameter_services=False)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.destroy_node()
    rclpy.shutdown(context=ctx)


def test_nested_section_is_declared_with_dotted_names(make_node):
    node = make_node(**{"encoder.attention.kind": "eager", "encoder.batch_size": 4})
    cfg = declare_section(node, "encoder", EncoderConfig)
    assert cfg.attention.kind == "eager" and cfg.batch_size == 4
    assert node.has_parameter("encoder.attention.kind") and not node.has_parameter("encoder.attention")
    kind, batch = node.describe_parameters(["encoder.attention.kind", "encoder.batch_size"])
    assert "sdpa" in kind.description and kind.read_only
    assert batch.description == "crops per forward pass" and batch.additional_constraints == "range [1, 1024]"
    assert (batch.integer_range[0].from_value, batch.integer_range[0].to_value) == (1, 1024)
    width = node.describe_parameters(["encoder.image_width"])[0]
    assert width.description == "image_width"  # no description given: the field name, as before


def test_bad_nested_value_names_the_parameter(make_node):
    node = make_node(**{"encoder.attention.kind": "flash"})
    kinds = "sdpa, eager, window, sparse, lam, prune"
    with pytest.raises(ConfigError, match=f"encoder.attention.kind must be one of {kinds}, not 'flash'"):
        declare_section(node, "encoder", EncoderConfig)
