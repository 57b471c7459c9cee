"""Store URLs, for the gateway: see :mod:`signgate.storeurl` (in the core package, so that
:class:`signgate.Revoker` reads the same URLs without the gateway extra)."""

from ..storeurl import EXAMPLES as EXAMPLES
from ..storeurl import StoreURL as StoreURL
from ..storeurl import StoreURLError as StoreURLError
from ..storeurl import parse as parse
from ..storeurl import shown as shown

__all__ = ["EXAMPLES", "StoreURL", "StoreURLError", "parse", "shown"]
