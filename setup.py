"""grepq: no-reference image quality (GRepQ) as Beam pipelines.

Also usable as Dataflow's ``--setup_file``: workers install this package with
its dependencies. The four top-level versions are pinned in requirements.txt
and every resolved version in constraints.txt; scripts/install.sh installs
with both (make, CI and the worker image alike).
"""
from setuptools import find_packages, setup

setup(
    name="grepq",
    version="0.1.0",
    description="Tell good images from bad ones without a reference (GRepQ, WACV 2024), at collection scale.",
    python_requires=">=3.10",
    packages=find_packages(include=["grepq_core*", "transforms*", "pipelines*"]),
    package_data={"grepq_core.model": ["assets/*", "configs/*.json"], "grepq_core.evaluation": ["assets/*"]},
    install_requires=[
        "apache-beam>=2.60",
        "torch>=2.1",
        "torchvision>=0.16",
        "open_clip_torch>=3.3,<3.4",  # hl_encoder re-runs its image towers (VisionTransformer._pool)
        "pyarrow>=14",
        "pandas>=2",
        "numpy>=1.24",
        "scipy>=1.10",
        "h5py>=3.8",  # the reference pristine patches (HDF5), grepq_core.pristine
        "scikit-learn>=1.3",
        "scikit-image>=0.19",  # grepq_core.distortions (make-training-set, train-ll)
        "brisque>=0.2,<0.3",  # BRISQUE's trained SVR files, read by grepq_core.baselines (evaluate)
        "pillow>=10",
        "fsspec>=2023.6",
        "piq>=0.8",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        "webdataset>=0.2.100",  # WebDataset tar shards: member names, and the writer of filtered shards
        "braceexpand>=0.1.7",  # shard patterns as webdataset writes them, {00000..00099}
    ],
    extras_require={
        "gcp": ["apache-beam[gcp]", "gcsfs", "google-cloud-storage"],
        "test": ["pytest>=7", "pytest-timeout", "gcp-storage-emulator", "gcsfs", "google-cloud-storage"],
    },
    entry_points={"console_scripts": ["grepq=pipelines.cli:main"]},
)
