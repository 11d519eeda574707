"""Entry point of the PyQt5 application (`midseg-gui`, `midseg gui`).

The GUI is a thin client of `midseg.session` (see DESIGN.md). It is not part
of this release yet: the entry point says so instead of failing obscurely.
"""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Start the GUI; returns the exit status."""
    print("midseg-gui: the graphical application is not available in this release yet; "
          "use the Python API (midseg.Session) or the `midseg` command.", file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
