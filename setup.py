"""ament_python build of person_search (also a plain pip-installable package)."""

from glob import glob
import importlib.util
import os
import sys

from setuptools import find_packages, setup

package_name = "person_search"


def node_console_scripts():
    """Return the nodes' entry points from the graph declaration (person_search/graph/spec.py).

    The file is loaded alone (standard library only), so the build needs none of the
    package's dependencies.
    """
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), package_name, "graph", "spec.py")
    spec = importlib.util.spec_from_file_location("_person_search_graph_spec", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module.console_scripts()


setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=["person_search", "person_search.*"]),
    package_data={"person_search": ["model_configs/*.json"], "person_search.web": ["static/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        (os.path.join("share", package_name, "launch"), glob("launch/*.py")),
        (os.path.join("share", package_name, "config"), glob("config/*.yaml") + glob("config/*.xml")),
        (os.path.join("share", package_name, "rviz"), glob("rviz/*.rviz")),
        # models/README.md (how to get weights) and any model files put there before the build
        (os.path.join("share", package_name, "models"),
         [f for f in glob("models/*") if os.path.isfile(f) and not os.path.basename(f).startswith(".")]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="person_search developers",
    maintainer_email="dev@person-search.invalid",
    description="Find people in live video by a text description (ROS 2).",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": node_console_scripts() + ["person-search = person_search.cli:main"],
    },
)
