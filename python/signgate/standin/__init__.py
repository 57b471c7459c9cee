"""signgate's offline stand-in for four LLM APIs: a deterministic parser, not a model.

:func:`extract` fills a JSON schema from plain words; :func:`respond` answers a request read by
:mod:`signgate.providers` with text or a tool call; :func:`create_app` serves that as OpenAI Chat
Completions and Responses, Anthropic Messages and Google Gemini; :func:`serve` runs it with
uvicorn. See ``docs/standin.md``.
"""

from .answers import respond as respond
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
    "create_app",
    "extract",
    "reply",
    "respond",
    "serve",
]
