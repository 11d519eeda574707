# mypy's view of midseg.models: setup.py installs the top-level folder models/ as
# midseg.models (package_dir), a mapping mypy cannot follow. mypy checks models/ itself
# as the module `models`; this stub re-exports it (names outside its __all__ that midseg
# imports are listed below). See [tool.mypy] in pyproject.toml.
from models import *
from models import net_forward as net_forward
from models import _load_uncached as _load_uncached
from models import _import_runtime as _import_runtime
