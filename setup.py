"""The package list, the one build setting pyproject.toml cannot express.

``static/`` (the snippet, the extension module, ``docs.html``) stays a top-level folder
of the repository and is installed as the package ``sightline_static``: a ``package-dir``
mapping, which setuptools applies only to packages listed by name, while
``[tool.setuptools.packages.find]`` cannot add one to those it discovers. So discovery
runs here, with the mapped package added. Everything else is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        *find_namespace_packages(include=["sightline*", "collector*", "worker*"]),
        "sightline_static",
    ],
    package_dir={"sightline_static": "static"},
)
