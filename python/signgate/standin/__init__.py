"""signgate's offline stand-in for an OpenAI-compatible API: a deterministic parser, not a model.

:func:`extract` fills a JSON schema from plain words; :func:`create_app` serves it as
``POST /v1/chat/completions``; :func:`serve` runs that with uvicorn. See ``docs/standin.md``.
"""

from .cli import add_arguments as add_arguments
from .cli import run as run
from .model import PLAIN_ANSWER as PLAIN_ANSWER
from .model import extract as extract
from .model import reply as reply
from .server import StandinApp as StandinApp
from .server import Stats as Stats
from .server import create_app as create_app
from .server import serve as serve

__all__ = [
    "PLAIN_ANSWER",
    "StandinApp",
    "Stats",
    "add_arguments",
    "create_app",
    "extract",
    "reply",
    "run",
    "serve",
]
