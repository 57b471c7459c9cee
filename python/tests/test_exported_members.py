"""The package face: __all__ is complete and sorted (httpx keeps the same test)."""

from __future__ import annotations

import signgate
import signgate.gateway


def test_all_is_complete_and_sorted() -> None:
    for module in (signgate, signgate.gateway):
        public = {name for name in dir(module) if not name.startswith("_")}
        submodules = {name for name in public if type(getattr(module, name)).__name__ == "module"}
        assert set(module.__all__) == public - submodules, module.__name__
        assert module.__all__ == sorted(module.__all__), module.__name__
