"""signgate's offline stand-in for an OpenAI-compatible API: a deterministic parser, not a model.

:func:`extract` fills a JSON schema from plain words; :func:`create_app` serves it as
``POST /v1/chat/completions``. See ``docs/standin.md``.
"""

from .model import PLAIN_ANSWER as PLAIN_ANSWER
from .model import extract as extract
from .model import reply as reply
