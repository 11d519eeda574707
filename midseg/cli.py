"""The `midseg` command: one entry point, one subcommand per job.

This module only parses arguments and reports errors and warnings; the work
lives in the library modules each subcommand names. Bad input gives a one-line
message and a non-zero exit; `--debug` shows the traceback. midseg's warnings
(a result that may not be right) are printed as ``midseg CMD: warning: ...``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
import warnings

from ._package import exit_if_shadowed

exit_if_shadowed("midseg")  # before the first name taken from the package itself
from . import __version__  # noqa: E402
from .errors import MidsegError, show_warnings_as_lines

# name -> (module implementing add_arguments(parser) and run(args), one-line help)
SUBCOMMANDS = {
    "demo": (
        "midseg.demo",
        "segment a bundled phantom (or your image) from stored clicks and report Dice",
    ),
    "segment": ("midseg.batch", "segment one image by replaying a clicks file"),
    "batch": ("midseg.batch", "replay stored clicks over many images listed in a CSV manifest"),
    "markups": ("midseg.markups", "convert clicks to and from 3D Slicer point lists (.mrk.json)"),
    "train": ("midseg.train", "train a 2D or 3D stage-1 network and write weights + model card"),
    "evaluate": (
        "midseg.evaluation.cli",
        "robot-user evaluation of midseg and its peers on a dataset",
    ),
    "gui": ("midseg.gui.app", "open the interactive PyQt5 application"),
}

EPILOG = textwrap.dedent("""\
    Run `midseg COMMAND --help` for the options of one command.

    exit status: 0 success, 1 error in the input or the run, 2 usage error.
    Warnings about a result (e.g. margin points all in one plane) go to stderr.
    """)


class NotAvailable(MidsegError):
    """A subcommand whose implementation is not part of this release."""


def _load(name: str):
    module_name = SUBCOMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    prefix = f"{name}_" if hasattr(module, f"{name}_run") else ""
    add = getattr(module, f"{prefix}add_arguments", None)
    run = getattr(module, f"{prefix}run", None)
    if add is None or run is None:
        return None
    return add, run


def _add_hooks(name: str, p: argparse.ArgumentParser) -> None:
    """Give subcommand `name`'s parser its arguments and ``_run`` (None: not available)."""
    hooks = _load(name)
    run = p.get_default("_run")  # a caller (a test) may have set its own
    if hooks is None:
        p.description = SUBCOMMANDS[name][1] + "\n\n(not available in this release yet)"
    else:
        hooks[0](p)
    if run is None:
        p.set_defaults(_run=None if hooks is None else hooks[1])


class _LazySubcommands(argparse._SubParsersAction):
    """Subparsers whose module is imported when the command line names them.

    Importing every subcommand's module to build the parser cost every command about
    0.8 s of CPU (scipy.stats for `evaluate`, ...): ``midseg batch --help`` took 1.0 s of
    CPU, now 0.19 s, since it imports `midseg.batch` only.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._loaded: set[str] = set()

    def __call__(self, parser, namespace, values, option_string=None):
        name = values[0] if values else None
        if name in self._name_parser_map and name not in self._loaded:
            self._loaded.add(name)
            _add_hooks(name, self._name_parser_map[name])
        super().__call__(parser, namespace, values, option_string)


def build_parser() -> argparse.ArgumentParser:
    """The `midseg` parser; a subcommand's module is imported when it is parsed."""
    parser = argparse.ArgumentParser(
        prog="midseg",
        description="Minimally interactive segmentation of 2D and 3D medical images "
        "(MIDeepSeg): interior margin points -> CNN -> click refinement.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"midseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", action=_LazySubcommands)
    for name, (_, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show full tracebacks on errors",
        )
    return parser


def run_entry(prog: str, run, args, *, print_warnings: bool = True) -> int:
    """The one error path of every entry point (`midseg`, `midseg-gui`, the module mains).

    Calls ``run(args)`` and returns its exit status (None counts as 0). A `MidsegError`,
    ``ValueError`` or ``OSError`` becomes one line ``"<prog>: error: <first line>"`` on
    stderr and status 1 (the traceback with ``args.debug``); Ctrl+C gives status 130.
    With `print_warnings`, midseg's warnings are printed as one line
    ``"<prog>: warning: ..."``, every time they occur (unless ``-W`` or
    ``PYTHONWARNINGS`` set the filters).
    """
    debug = getattr(args, "debug", False)
    try:
        if not print_warnings:
            return int(run(args) or 0)
        with warnings.catch_warnings():
            show_warnings_as_lines(prog)
            return int(run(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (MidsegError, ValueError, OSError) as exc:
        if debug:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    """Run the `midseg` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2

    def work(args):
        if args._run is None:
            raise NotAvailable(f"'midseg {args.command}' is not available in this release yet")
        return args._run(args)

    return run_entry(f"midseg {args.command}", work, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
