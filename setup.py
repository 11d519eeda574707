"""Packaging for midseg: one distribution, console scripts midseg and midseg-gui.

The top-level folders gui/, data_sim/ and models/ install as midseg.gui,
midseg.data_sim and midseg.models, so no bare top-level module is created.
"""
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent

setup(
    name="midseg",
    version="0.1.0",
    description="Click-based interactive segmentation of 2D and 3D medical images (MIDeepSeg)",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    license_files=["LICENSE"],
    python_requires=">=3.10",
    packages=["midseg", "midseg.evaluation", "midseg.gui", "midseg.data_sim", "midseg.models",
              "midseg.training", "midseg.io", "midseg.batch"],
    package_dir={
        "midseg": "midseg",
        "midseg.gui": "gui",
        "midseg.data_sim": "data_sim",
        "midseg.models": "models",
    },
    package_data={
        "midseg": ["data/*.json", "py.typed"],
        "midseg.evaluation": ["report_template.md"],
        "midseg.models": ["*.pt", "*.json", "*.md"],
    },
    install_requires=[
        # torch: install the CPU build first (pip install torch==2.13.0); any
        # 2.x satisfies this, so pip does not replace it with a CUDA build.
        "torch>=2.1",
        "numpy>=1.24",
        "scipy>=1.10",
        "SimpleITK>=2.2",
        "PyMaxflow>=1.3",
        "scikit-image>=0.21",
        # the random-walker peer's multigrid solver (skimage mode="cg_mg")
        "pyamg>=5",
        "numba>=0.58",
        "tqdm>=4.60",
        # 3D Slicer .seg.nrrd label maps with segment names and colours (midseg.labelmap)
        "slicerio>=1.0",
        # the clicks-file schema (midseg/data/clicks.schema.json)
        "jsonschema>=4.18",
        # training augmentation (midseg.train: RandomAffine, bias field, blur)
        "torchio>=0.20",
        "matplotlib>=3.6",
    ],
    extras_require={
        "gui": ["PyQt5>=5.15"],
        "dist": ["dask[distributed]>=2023.1"],
        # DICOM-SEG outputs (midseg.dicomseg)
        "dicom": ["highdicom>=0.22", "pydicom>=2.4"],
        # optional faster stage 1 on CPU (midseg.models.RUNTIMES): ONNX Runtime + exporter
        "fast": ["onnxruntime>=1.17", "onnx>=1.15"],
        "dev": [
            "pytest>=7",
            "pytest-qt>=4.2",
            "hypothesis>=6.80",
            "dask[distributed]>=2023.1",
            "highdicom>=0.22",
            "pydicom>=2.4",
            "mypy~=2.4.1",
            "ruff~=0.17.6",
        ],
    },
    entry_points={
        "console_scripts": [
            "midseg=midseg.cli:main",
            "midseg-gui=midseg.gui.app:main",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Medical Science Apps.",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
