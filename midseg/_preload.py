"""What a worker needs loaded before its first case; imported once by the batch's fork
server (`midseg.batch`) and by the GUI's worker thread when a session starts.

The session and refinement code, PyMaxflow, SimpleITK, the clicks schema's validator, the
batch's case runner, the stage-1 runtime (ONNX Runtime where it runs the networks, else
torch) and the geodesic kernels compiled (or loaded from numba's cache) are in the fork
server's memory before any worker forks from it, so a worker starts in milliseconds
instead of importing and compiling all again. Torch is imported only where it will run the
networks: ONNX Runtime loads a cached export without it (`midseg.models`), which spares
the fork server about 1 s. Nothing here starts a thread or touches a GPU (forking after
that would not be safe).
"""

from __future__ import annotations

import maxflow  # noqa: F401
import SimpleITK  # noqa: F401  (reads and writes every image)

import midseg.batch.records  # noqa: F401  (what a batch worker runs)
import midseg.cues  # noqa: F401
import midseg.metrics  # noqa: F401
import midseg.models  # noqa: F401
import midseg.predict  # noqa: F401
import midseg.refine  # noqa: F401
import midseg.session  # noqa: F401
from midseg.clicks import _clicks_validator
from midseg.geodesic import load_kernels

midseg.models._import_runtime()
_clicks_validator()
load_kernels()  # here, not in a background process: every worker gets them compiled
