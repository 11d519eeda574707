"""Where the midseg package comes from: a source checkout's folders, a folder that hides it.

setup.py installs the top-level folders ``gui/``, ``data_sim/`` and ``models/`` of a
checkout as ``midseg.gui``, ``midseg.data_sim`` and ``midseg.models`` (``package_dir``).
An editable install does this with an import hook holding the absolute paths of the
checkout it was made from; without help, ``midseg`` imported from the current folder of
*another* checkout would take those three from the installed one. `use_checkout_folders`
makes them follow the ``midseg`` folder actually imported.

A folder named ``midseg`` without ``__init__.py`` (a clone named ``midseg`` seen from its
parent folder, an empty folder) found before an editable install's hook makes
``import midseg`` a namespace package: midseg's own ``__init__`` never runs, so
``midseg.Session`` is an ``AttributeError`` that no code of midseg can prevent (a regular,
non-editable install wins over such a folder). The entry points (``midseg``,
``midseg-gui``, ``python -m midseg.cli|evaluate|train|gui.app``) call `exit_if_shadowed`
first and stop with a one-line error naming the folder.
"""

from __future__ import annotations

import importlib.util
import os
import sys

#: midseg subpackage -> its folder in a source checkout (relative to the checkout root)
CHECKOUT_FOLDERS = {"midseg.gui": "gui", "midseg.data_sim": "data_sim", "midseg.models": "models"}


class _CheckoutFinder:
    """Meta path finder: ``midseg.gui``/``data_sim``/``models`` from one checkout's folders."""

    def __init__(self, root: str) -> None:
        self.root = root

    def find_spec(self, fullname: str, path=None, target=None):
        folder = CHECKOUT_FOLDERS.get(fullname)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(
            fullname, os.path.join(self.root, folder, "__init__.py")
        )


def use_checkout_folders(init_file: str) -> bool:
    """Resolve midseg's mapped subpackages next to the ``midseg/`` of `init_file`.

    Only in a source checkout: the folder above ``midseg/`` holds ``setup.py`` and the
    three folders of `CHECKOUT_FOLDERS`, each with an ``__init__.py`` (an installed copy
    in site-packages has no ``setup.py`` there and is left alone). Idempotent. Returns
    whether a checkout was found.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(init_file)))
    if not os.path.isfile(os.path.join(root, "setup.py")) or not all(
        os.path.isfile(os.path.join(root, f, "__init__.py")) for f in CHECKOUT_FOLDERS.values()
    ):
        return False
    # one finder, also after a reload of this module (a new _CheckoutFinder class)
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "_CheckoutFinder"]
    sys.meta_path.insert(0, _CheckoutFinder(root))
    return True


def shadowing_folders() -> list[str] | None:
    """The folders of ``midseg`` when it was imported as a namespace package, else None."""
    pkg = sys.modules.get("midseg")
    if pkg is None or getattr(pkg, "__file__", None) is not None:
        return None
    return [str(p) for p in getattr(pkg, "__path__", [])]


def exit_if_shadowed(prog: str) -> None:
    """Exit (status 1) with one line on stderr when ``midseg`` is a folder, not the package.

    Raises
    ------
    SystemExit
        ``"<prog>: error: 'midseg' is the folder ... (no __init__.py) ..."``.
    """
    folders = shadowing_folders()
    if folders is not None:
        raise SystemExit(
            f"{prog}: error: 'midseg' is the folder {', '.join(folders) or '?'} "
            "(no __init__.py), which hides the installed package: run from another "
            "folder or rename that one"
        )
