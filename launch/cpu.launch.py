"""Desktop CPU: video file source, PyTorch backend, small encoder (config/cpu.yaml).

Usage::

    ros2 launch person_search cpu.launch.py source:=/path/to/video.mp4 [loop:=true] [rviz:=true]
"""

from person_search.graph.launch import generate


def generate_launch_description():
    return generate("cpu.yaml")
