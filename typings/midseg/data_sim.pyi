# mypy's view of midseg.data_sim (the folder data_sim/, mapped by setup.py's package_dir);
# see typings/midseg/models.pyi.
from data_sim import *
