"""Robot-user evaluation: midseg against its peers on the same clicks, with tables and plots.

The package is split by responsibility; this module re-exports the public API
(`midseg.evaluate` is the older name of the same API and ``python -m midseg.evaluate``
its command line):

- `midseg.evaluation.cases`: datasets known by name, `Case`, `load_cases`, `case_seed`;
- `midseg.evaluation.methods`: the `Method` protocol, `SessionMethod` (midseg through
  `Session`), `PeerMethod` (`midseg.peers`), `make_methods`;
- `midseg.evaluation.protocol`: the robot-user protocol (`run_protocol`, see its module
  docstring) and the per-step CSV;
- `midseg.evaluation.summary`: per-method summaries and paired differences; the click
  metrics `noc`, `auc`, `consistent_improvement` live in `midseg.metrics`;
- `midseg.evaluation.report`: the Markdown report and its plots;
- `midseg.evaluation.cli`: the `midseg evaluate` command.

It must not implement segmentation itself: it drives `Session` and `midseg.peers`.
"""

from __future__ import annotations

from ..metrics import auc, consistent_improvement, noc
from .cases import BRATS_TEST_CASES, DATASETS, Case, case_seed, default_data_root, load_cases
from .cli import add_arguments, main, run
from .methods import METHOD_NAMES, MIDSEG_VARIANTS, Method, PeerMethod, SessionMethod, make_methods
from .protocol import (
    CSV_FIELDS,
    DEFAULT_CLICKS,
    NOC_CAP,
    evaluate_case,
    read_csv,
    run_protocol,
    write_csv,
)
from .report import write_report
from .summary import paired_differences, summarise

__all__ = [
    "Case",
    "DATASETS",
    "load_cases",
    "case_seed",
    "run_protocol",
    "SessionMethod",
    "PeerMethod",
    "make_methods",
    "METHOD_NAMES",
    "CSV_FIELDS",
    "write_csv",
    "read_csv",
    "noc",
    "auc",
    "consistent_improvement",
    "summarise",
    "write_report",
    "paired_differences",
    "add_arguments",
    "run",
    "main",
    "DEFAULT_CLICKS",
    "NOC_CAP",
    "Method",
    "evaluate_case",
    "default_data_root",
    "BRATS_TEST_CASES",
    "MIDSEG_VARIANTS",
]
