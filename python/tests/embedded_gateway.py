"""The gateway embedded as a plain ASGI app under stock uvicorn, without signgate's protocol.

``python embedded_gateway.py PORT HTTP -- SERVE-ARGS...``: HTTP is uvicorn's ``h11`` or
``httptools``; SERVE-ARGS are ``signgate serve``'s flags, turned into a configuration the same way.
This is what a user running ``create_app`` under their own server gets, so the gateway's fallbacks
for servers that are not ``signgate serve`` are tested through it.
"""

from __future__ import annotations

import sys

import uvicorn

from signgate.cli.serve import config_from_argv
from signgate.gateway import create_app

if __name__ == "__main__":
    port, http, separator, *serve_args = sys.argv[1:]
    assert separator == "--", "usage: embedded_gateway.py PORT HTTP -- SERVE-ARGS..."
    config = config_from_argv(serve_args)
    uvicorn.run(create_app(config), host="127.0.0.1", port=int(port), http=http, log_level="warning")
