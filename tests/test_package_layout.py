"""Where `midseg` comes from: a checkout's own gui/data_sim/models, a folder that hides it."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import tokenize
import types
from pathlib import Path

import pytest

import midseg
from midseg import _package

ENTRY_MODULES = {
    "midseg.cli": "midseg",
    "midseg.evaluate": "midseg evaluate",
    "midseg.train": "midseg train",
    "midseg.gui.app": "midseg-gui",
}


def _fake_checkout(root: Path) -> Path:
    """A checkout whose midseg/ is this one (a link) and whose gui/data_sim/models are stubs."""
    root.mkdir()
    (root / "setup.py").write_text("", encoding="utf-8")
    (root / "midseg").symlink_to(Path(midseg.__file__).parent, target_is_directory=True)
    for folder in _package.CHECKOUT_FOLDERS.values():
        (root / folder).mkdir()
        (root / folder / "__init__.py").write_text(f"WHERE = {folder!r}\n", encoding="utf-8")
    return root


def test_a_checkout_loads_its_own_gui_data_sim_and_models(tmp_path):
    # cwd first on sys.path: midseg is the checkout's; an editable install of another
    # checkout must not supply midseg.data_sim & co.
    root = _fake_checkout(tmp_path / "second")
    code = (
        "import midseg, midseg.gui, midseg.data_sim, midseg.models as m; "
        "print(midseg.__file__); print(midseg.gui.__file__); "
        "print(midseg.data_sim.__file__); print(m.__file__, m.WHERE)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == [
        str(root / "midseg" / "__init__.py"),
        str(root / "gui" / "__init__.py"),
        str(root / "data_sim" / "__init__.py"),
        f"{root / 'models' / '__init__.py'} models",
    ]


def test_an_installed_copy_is_not_taken_for_a_checkout(tmp_path):
    (tmp_path / "midseg").mkdir()  # site-packages/midseg: no setup.py beside it
    for folder in _package.CHECKOUT_FOLDERS.values():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("", encoding="utf-8")
    before = list(sys.meta_path)
    assert not _package.use_checkout_folders(str(tmp_path / "midseg" / "__init__.py"))
    assert sys.meta_path == before


def test_exit_if_shadowed_names_the_folder(monkeypatch, tmp_path):
    _package.exit_if_shadowed("midseg")  # the real package: nothing happens
    namespace = types.ModuleType("midseg")
    namespace.__file__ = None
    namespace.__path__ = [str(tmp_path / "midseg")]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "midseg", namespace)
    with pytest.raises(SystemExit) as exc:
        _package.exit_if_shadowed("midseg-gui")
    msg = str(exc.value.code)
    assert msg.startswith("midseg-gui: error: 'midseg' is the folder ")
    assert str(tmp_path / "midseg") in msg and "\n" not in msg


@pytest.mark.parametrize("module", sorted(ENTRY_MODULES))
def test_entry_points_stop_with_one_line_when_a_folder_hides_midseg(tmp_path, module):
    (tmp_path / "midseg").mkdir()
    probe = subprocess.run(
        [sys.executable, "-c", "import midseg; print(midseg.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    if probe.stdout.strip() != "None":
        pytest.skip("a regular (non-editable) install wins over a folder named midseg")
    out = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 1
    assert out.stderr.startswith(f"{ENTRY_MODULES[module]}: error: 'midseg' is the folder ")
    assert str(tmp_path / "midseg") in out.stderr and out.stderr.count("\n") == 1


# ----------------------------------------------------------------------------------------
# Size limits (issue 22): no module over 600 lines, no function over 80 lines of code
# ----------------------------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]
SOURCE_TREES = ("midseg", "gui", "models", "data_sim")
MAX_MODULE_CODE_LINES = 600
MAX_FUNCTION_CODE_LINES = 80


def _code_lines(source: str) -> tuple[ast.Module, set[int]]:
    """The parsed module and the numbers of its lines of code.

    A line of code holds a token that is not a comment: blank lines, comment-only lines
    and docstrings (the string constant that is the first statement of a module, class or
    function) do not count.
    """
    tree = ast.parse(source)
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    layout = {
        tokenize.COMMENT,
        tokenize.NL,
        tokenize.NEWLINE,
        tokenize.INDENT,
        tokenize.DEDENT,
        tokenize.ENDMARKER,
    }
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in layout:
            lines.update(range(tok.start[0], tok.end[0] + 1))
    return tree, lines - docstrings


def _sizes() -> tuple[dict[str, int], dict[str, int]]:
    """Code lines of every module of `SOURCE_TREES` and of every function in them.

    Keys: ``path`` and ``path::function`` (paths relative to the repository, with ``/``);
    a function's lines include those of the functions nested in it.
    """
    modules, functions = {}, {}
    for tree_name in SOURCE_TREES:
        for path in sorted((REPO / tree_name).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            tree, lines = _code_lines(path.read_text(encoding="utf-8"))
            modules[rel] = len(lines)
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    end = node.end_lineno or node.lineno
                    n = sum(1 for line in lines if node.lineno <= line <= end)
                    key = f"{rel}::{node.name}"
                    functions[key] = max(n, functions.get(key, 0))
    return modules, functions


def test_code_lines_skip_blanks_comments_and_docstrings():
    source = (
        '"""Module."""\n\n\ndef f(a,\n      b):\n    """Doc\n    string."""\n'
        "    # note\n    return (a +\n            b)  # sum\n"
    )
    tree, lines = _code_lines(source)
    assert lines == {4, 5, 9, 10}


def test_no_module_or_function_over_the_size_limits():
    modules, functions = _sizes()
    assert len(modules) > 50
    big_modules = {m: n for m, n in modules.items() if n > MAX_MODULE_CODE_LINES}
    big_functions = {f: n for f, n in functions.items() if n > MAX_FUNCTION_CODE_LINES}
    assert not big_modules, f"modules over {MAX_MODULE_CODE_LINES} lines of code: {big_modules}"
    assert not big_functions, (
        f"functions over {MAX_FUNCTION_CODE_LINES} lines of code: {big_functions}"
    )
