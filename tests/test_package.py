"""Packaging promises: cheap import, console entry points, CLI error handling."""

from __future__ import annotations

import subprocess
import sys

import pytest

from midseg import cli


def test_import_does_not_load_torch_or_qt():
    code = (
        "import sys, midseg; midseg.Image; midseg.read_image; midseg.dice; "
        "heavy = [m for m in ('torch', 'PyQt5', 'SimpleITK') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = out.stdout.strip().split(",") if out.stdout.strip() else []
    assert "torch" not in loaded and "PyQt5" not in loaded


def test_no_bare_top_level_gui_module():
    import importlib.util

    for name in ("gui", "data_sim", "models"):
        spec = importlib.util.find_spec(name)
        assert spec is None or "site-packages" not in (spec.origin or ""), name
    import midseg.data_sim
    import midseg.gui
    import midseg.models  # noqa: F401


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("demo", "segment", "batch", "train", "evaluate", "gui"):
        assert name in out


def test_console_script_runs():
    out = subprocess.run(["midseg", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("midseg ")


def test_bad_input_gives_one_line_error(tmp_path, capsys, monkeypatch):
    def run(args):
        import midseg

        midseg.read_image(tmp_path / "missing.nii.gz")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    for action in parser._subparsers._group_actions[0].choices.values():
        action.set_defaults(_run=run)
    status = cli.main(["demo"])
    err = capsys.readouterr().err
    assert status == 1
    assert err.count("\n") == 1 and "no such file" in err and "Traceback" not in err
