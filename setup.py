"""Packaging for tfrs_mm and its Beam jobs. Ranges live in requirements/*.txt;
exact, reproducible versions in constraints.txt (`make install` uses both)."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def requirements(name: str) -> list[str]:
    lines = (HERE / "requirements" / f"{name}.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="tfrs-mm",
    version="0.1.0",
    description="Multimodal recommender stack: Beam preprocessing, TFRS two-tower retrieval and "
    "ranking, ScaNN, and TF-Serving-compatible export and serving.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["tfrs_mm", "tfrs_mm.*", "beam_jobs", "beam_jobs.*"]),
    include_package_data=True,
    install_requires=requirements("base"),
    extras_require={
        "dev": requirements("dev"),
        # Install these with --no-deps (the Makefile does): their declared
        # dependencies would pull in torch. Listed here so the pins are visible.
        "encoders": requirements("encoders"),
    },
    entry_points={"console_scripts": ["tfrs-mm=tfrs_mm.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
