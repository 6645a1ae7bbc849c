"""Jetson Orin: V4L2 camera, YOLO TensorRT engine, CLIP image tower as a TensorRT engine (config/orin.yaml).

Usage::

    ros2 launch person_search orin.launch.py [source:=/dev/video0] [rviz:=true]
"""

from person_search.graph.launch import generate


def generate_launch_description():
    return generate("orin.yaml")
