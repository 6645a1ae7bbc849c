"""Thin rclpy nodes: parameters in, one core object, conversions, publish."""
