"""What signgate knows about each LLM API, one module per API.

============  ==========================================  =====================
``name``      API                                         routes
============  ==========================================  =====================
``chat``      OpenAI Chat Completions (and compatibles)   ``POST /v1/chat/completions``, ``GET /v1/models``
``responses`` OpenAI Responses                            ``POST /v1/responses``
``anthropic`` Anthropic Messages                          ``POST /v1/messages``
``gemini``    Google Gemini                               ``POST /{v1,v1beta,v1alpha}/models/M:generateContent``,
                                                          ``:streamGenerateContent?alt=sse``
============  ==========================================  =====================

Each module is a :class:`Provider` (see :mod:`.base`); :func:`find` picks one from a method
and a path of a server's own routes (the stand-in's), :func:`find_upstream` from the method and
the upstream path of a request a gateway forwards (whatever base URL comes first). Each also
says where its request body keeps what a gateway's body policy governs (:mod:`._govern`).
Nothing outside this package names a provider.
"""

from __future__ import annotations

from . import anthropic, chat, gemini, responses
from ._govern import MISSING as MISSING
from ._govern import Governed as Governed
from .base import Event as Event
from .base import OutputFormat as OutputFormat
from .base import Provider as Provider
from .base import ProviderError as ProviderError
from .base import Reply as Reply
from .base import Request as Request
from .base import Route as Route
from .base import Stamp as Stamp
from .base import StreamWriter as StreamWriter
from .base import Tool as Tool
from .base import ToolCall as ToolCall
from .base import ToolChoice as ToolChoice
from .base import Turn as Turn
from .base import Usage as Usage
from .base import encode_events as encode_events
from .registry import PROVIDERS as PROVIDERS
from .registry import RouteError as RouteError
from .registry import by_name as by_name
from .registry import find as find
from .registry import find_upstream as find_upstream

__all__ = [
    "MISSING",
    "PROVIDERS",
    "Event",
    "Governed",
    "OutputFormat",
    "Provider",
    "ProviderError",
    "Reply",
    "Request",
    "Route",
    "RouteError",
    "Stamp",
    "StreamWriter",
    "Tool",
    "ToolCall",
    "ToolChoice",
    "Turn",
    "Usage",
    "anthropic",
    "by_name",
    "chat",
    "encode_events",
    "find",
    "find_upstream",
    "gemini",
    "responses",
]
