# mypy's view of midseg.gui.planes (the folder gui/, mapped by setup.py's package_dir);
# see typings/midseg/models.pyi.
from gui.planes import *
