"""midseg: click-based interactive segmentation of 2D and 3D medical images.

Importing midseg is cheap: torch, Qt and model weights are loaded on first
use, never at import time. The public names below resolve lazily.
"""

from __future__ import annotations

import importlib

from ._package import use_checkout_folders as _use_checkout_folders

__version__ = "0.1.0"

# in a source checkout, midseg.gui/.data_sim/.models are this checkout's folders, even
# when an editable install of another checkout is on the path (see midseg._package)
_use_checkout_folders(__file__)

# public name -> module that defines it
_LAZY = {
    "Image": "midseg.io",
    "read_image": "midseg.io",
    "write_image": "midseg.io",
    "write_mask": "midseg.io",
    "read_mask": "midseg.io",
    "MidsegError": "midseg.errors",
    "InvalidInputError": "midseg.errors",
    "ImageReadError": "midseg.errors",
    "GeometryMismatchError": "midseg.errors",
    "ModelError": "midseg.errors",
    "dice": "midseg.metrics",
    "assd": "midseg.metrics",
    "hd95": "midseg.metrics",
    "geodesic_distance": "midseg.geodesic",
    "Session": "midseg.session",
    "LabelSession": "midseg.label_session",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'midseg' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
