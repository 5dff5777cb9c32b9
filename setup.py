"""Packaging for dim_featurizer.

``train/`` installs as ``dim_featurizer.train`` (a bare top-level ``train``
would clash with other projects), and ``weights/`` as
``dim_featurizer.bundled_weights`` so the shipped weights travel in wheels.
"""

from pathlib import Path

from setuptools import setup

here = Path(__file__).parent

setup(
    name="dim_featurizer",
    version="0.1.0",
    description="Site-Net Deep InfoMax feature vectors for crystal structures (matminer / scikit-learn)",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=[
        "dim_featurizer",
        "dim_featurizer.examples",
        "dim_featurizer.train",
        "dim_featurizer.bench",
        "dim_featurizer.bundled_weights",
    ],
    package_dir={
        "dim_featurizer": "dim_featurizer",
        "dim_featurizer.train": "train",
        "dim_featurizer.bundled_weights": "weights",
    },
    package_data={
        "dim_featurizer.examples": ["*.cif", "sample_data/*"],
        "dim_featurizer.bundled_weights": ["manifest.json", "*/config.json", "*/model.safetensors", "*/README.md"],
    },
    install_requires=[
        "torch>=2.1,<3",
        "numpy>=1.24",
        "pandas>=1.5",
        "pymatgen>=2024.1.1",
        "matminer>=0.9",
        "spglib>=2.0",
        "safetensors>=0.4",
        "huggingface_hub>=0.20",
        "scikit-learn>=1.3",
        "tqdm>=4.60",
        "pyarrow>=12",
        "ijson>=3.2",
    ],
    extras_require={
        "dask": ["dask[dataframe,distributed]>=2024.1"],
        "ase": ["ase>=3.22"],
        "peers": ["chgnet>=0.3"],
        "train": ["matplotlib>=3.6"],
        "bench": ["matplotlib>=3.6", "joblib>=1.2", "psutil>=5.9"],
        "test": [
            "pytest>=7",
            "hypothesis>=6",
            "matplotlib>=3.6",
            "joblib>=1.2",
            "ruff>=0.5",
            "dask[dataframe,distributed]>=2024.1",
            "ase>=3.22",
            "chgnet>=0.3",
        ],
    },
    entry_points={
        "console_scripts": [
            "dim-featurize=dim_featurizer.cli:main",
            "dim-train=dim_featurizer.train.cli:main",
            "dim-bench=dim_featurizer.bench.cli:main",
        ]
    },
)
