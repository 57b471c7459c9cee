"""The gateway: an ASGI application that verifies signed URLs and relays to the upstream.

Needs the ``gateway`` extra: ``pip install 'signgate[gateway]'``.
"""

from .app import Gateway as Gateway
from .app import create_app as create_app
from .config import ConfigError as ConfigError
from .config import GatewayConfig as GatewayConfig
from .config import KeyConfig as KeyConfig
from .config import UpstreamPrefix as UpstreamPrefix
from .config import load_toml as load_toml

__all__ = ["ConfigError", "Gateway", "GatewayConfig", "KeyConfig", "UpstreamPrefix", "create_app", "load_toml"]
