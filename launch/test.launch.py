"""The graph tests' configuration (tiny random CLIP, HOG detector): config/test.yaml."""

from person_search.graph.launch import generate


def generate_launch_description():
    return generate("test.yaml")
