"""``python -m signgate.standin``: the same as ``signgate standin``."""

import sys

from ..cli import main

sys.exit(main(["standin", *sys.argv[1:]], prog="python -m signgate.standin"))
