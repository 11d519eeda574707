"""What a worker needs loaded before its first case; imported once by the batch's fork
server (`midseg.batch`) and by the GUI's worker thread when a session starts.

Torch, the session and refinement code, PyMaxflow, and the geodesic kernels compiled (or
loaded from numba's cache) are in the fork server's memory before any worker forks from
it, so a worker starts in milliseconds instead of importing and compiling all again.
Nothing here starts a thread or touches a GPU (forking after that would not be safe).
"""

from __future__ import annotations

import maxflow  # noqa: F401
import numpy as np
import torch  # noqa: F401  (imported, not used: no thread pool starts before a fork)

import midseg.models  # noqa: F401
import midseg.predict  # noqa: F401
import midseg.refine  # noqa: F401
import midseg.session  # noqa: F401
from midseg.geodesic import geodesic_distance

for _cost in ("geodistk", "additive"):
    geodesic_distance(np.zeros((4, 4), np.float32), [(1, 1)], cost=_cost)
