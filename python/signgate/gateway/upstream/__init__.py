"""The gateway's upstream client: pooled HTTP/1.1 connections on asyncio protocols and llhttp.

The gateway needs little from an HTTP client: send one request on a kept-alive connection, hand
back the status and raw headers, then the body as it arrives, and say whether it ended cleanly.
aiohttp's client did this at about a third of the gateway's CPU per request and 10 KB per open
stream. This one is in four parts:

- :mod:`.guard`: which addresses may be reached (names are resolved once, every address checked,
  and the connection goes to a checked address);
- :mod:`.models`: :class:`Target` (where a request goes) and :class:`Response` (one answer);
- :mod:`.connection`: an :class:`asyncio.Protocol` feeding ``httptools`` (llhttp, the parser
  Node.js uses), with caps on heads and trailers and backpressure at 64 KiB;
- :mod:`.pool`: :class:`Pool`, keep-alive per origin, happy eyeballs over checked addresses, a
  connect timeout and a read timeout that counts silence.

No redirects, cookies, decompression or proxies, by design. Errors are
:class:`~signgate.errors.UpstreamError` and its subclasses.
"""

from .guard import check_literal as check_literal
from .guard import is_public as is_public
from .models import Response as Response
from .models import Target as Target
from .pool import Pool as Pool

__all__ = ["Pool", "Response", "Target", "check_literal", "is_public"]
