"""Everything is in pyproject.toml except what it cannot say:

* the MXNet distribution: GPU users run ``EMOTION_MX_MXNET=mxnet-cu112 pip install .``
  (or ``make setup MXNET=mxnet-cu112``);
* the shipped configs: they live once, in the repository's top-level ``configs/`` folder, and
  are installed as ``emotion_mx/configs/`` (found by ``emotion_mx.config.config_path``);
  ``[tool.setuptools.packages.find]`` cannot add a package from outside ``emotion_mx/``.
"""
import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _requirements(name):
    with open(os.path.join(HERE, name)) as f:
        lines = (line.split("#", 1)[0].strip() for line in f)
        return [line for line in lines if line and not line.startswith("-")]


mxnet_pkg = os.environ.get("EMOTION_MX_MXNET", "mxnet")
setup(
    install_requires=[re.sub(r"^mxnet(?==)", mxnet_pkg, r) for r in _requirements("requirements.txt")],
    packages=find_packages(include=["emotion_mx", "emotion_mx.*"]) + ["emotion_mx.configs"],
    package_dir={"emotion_mx.configs": "configs"},
    # non-Python files the package reads at run time: a wheel carries only what is listed here
    package_data={"emotion_mx.configs": ["*.yaml", "*/*.yaml", "*/*/*.yaml"],
                  "emotion_mx.live": ["static/*"],
                  "emotion_mx.zoo": ["heads/*.npz", "cards/*.json"]},
)
