"""``python -m demo``: see :mod:`demo.launcher`."""

from .launcher import main

raise SystemExit(main())
