"""Replaying stored clicks over many images: `midseg segment` and `midseg batch`.

A manifest (CSV) lists cases; each case is replayed by a `Session` in a worker
(local process pool by default, a Dask cluster with ``--scheduler``). Outputs
are written atomically and each finished case leaves a record holding the
sha256 of its inputs, so a killed run resumes where it stopped and a case
whose image, clicks, ground truth, label or model changed is computed again.

``midseg.batch`` is the import path (and the module `midseg.cli` loads for both
subcommands); the code lives in its modules:

- `midseg.batch.manifest`: `read_manifest`, `Case`, safe case names and file names;
- `midseg.batch.segment`: `segment_one` (one image, one clicks file) and
  `read_ground_truth`;
- `midseg.batch.records`: the inputs' digests (resume), `run_case`, the case
  records and ``summary.csv`` (CSV formula escaping);
- `midseg.batch.workers`: the worker processes (fork server, parent watch);
- `midseg.batch.runner`: `run_batch`, the local pools and the Dask path;
- `midseg.batch.cli`: the `midseg segment` / `midseg batch` hooks.

Tests that patch a module global (e.g. ``run_case``, ``write_json_atomic``)
patch it in the module that looks it up, not here.
"""

from __future__ import annotations

from .cli import batch_add_arguments as batch_add_arguments
from .cli import batch_run as batch_run
from .cli import segment_add_arguments as segment_add_arguments
from .cli import segment_run as segment_run
from .manifest import _case_name as _case_name
from .manifest import _check_label as _check_label
from .manifest import Case, read_manifest
from .records import SUMMARY_FIELDS as SUMMARY_FIELDS
from .records import _csv_cell as _csv_cell
from .records import _model_sha256 as _model_sha256
from .records import run_case
from .runner import run_batch
from .segment import read_ground_truth, segment_one

__all__ = ["Case", "read_manifest", "read_ground_truth", "run_case", "run_batch", "segment_one"]
