"""Robot-user evaluation under its older name: ``midseg.evaluate`` re-exports `midseg.evaluation`.

The code lives in the package `midseg.evaluation` (cases, methods, protocol, summary,
report, cli); this module keeps ``from midseg.evaluate import ...`` and
``python -m midseg.evaluate ...`` (the same options as ``midseg evaluate``) working,
including the private helpers that tests and benchmarks reach for.
"""

from __future__ import annotations

import sys

from ._package import exit_if_shadowed

exit_if_shadowed("midseg evaluate")  # a one-line error, not a broken import below
from .evaluation.cases import (  # noqa: E402
    BRATS_TEST_CASES,
    DATASETS,
    Case,
    _brats_target,
    _seed_of,
    case_seed,
    default_data_root,
    load_cases,
)
from .evaluation.cli import _code_version, _model_record, _parse_extra, add_arguments, main, run
from .evaluation.methods import (
    METHOD_NAMES,
    MIDSEG_VARIANTS,
    Method,
    PeerMethod,
    SessionMethod,
    _order,
    _peer_names,
    make_methods,
)
from .evaluation.protocol import (
    CSV_FIELDS,
    DEFAULT_CLICKS,
    NOC_CAP,
    _fmt_point,
    _surface_metrics,
    _worker_init,
    _worker_run,
    evaluate_case,
    read_csv,
    run_protocol,
    write_csv,
)
from .evaluation.report import (
    EXTRA_MODEL_COLOURS,
    MIN_CASES_INTERVAL,
    _extra_model_origin,
    _first_click_harm,
    _losses,
    _num,
    _pct,
    _plot,
    _plot_styles,
    _targets,
    write_report,
)
from .evaluation.summary import _at, _curves, _mean_sd, paired_differences, summarise
from .metrics import auc, consistent_improvement, noc

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
]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
