"""signgate: presigned URLs for LLM APIs, and the gateway that checks them.

Your backend signs the exact request; the browser sends it to the gateway, which adds the API key::

    import os
    from signgate import Signer

    signer = Signer("my-app", os.environ["SIGNGATE_SECRET"], "https://llm-gateway.example.com")
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}
    signed = signer.sign("POST", "https://api.openai.com/v1/chat/completions", json=body)
    signed.to_dict()  # {"url", "method", "headers", "body"}: the browser sends exactly this

The gateway runs with ``signgate serve`` (``pip install 'signgate[gateway]'``; see
``signgate serve --help``). Bad input raises :class:`SigningError` naming the field.
:class:`Verifier` checks a signed request wherever you need to; :class:`Policy` and the
``single_use``, ``user`` and ``tenant`` arguments of :meth:`Signer.sign` bind abuse controls.
Every refusal is a :class:`VerificationError` with a stable ``code``. :class:`Revoker` takes
URLs back before they expire (``pip install 'signgate[redis]'``).
"""

from .errors import BadSignature as BadSignature
from .errors import BodyMismatch as BodyMismatch
from .errors import Expired as Expired
from .errors import ExpiryTooLong as ExpiryTooLong
from .errors import MalformedRequest as MalformedRequest
from .errors import MissingHeader as MissingHeader
from .errors import NotYetValid as NotYetValid
from .errors import RevocationError as RevocationError
from .errors import SigngateError as SigngateError
from .errors import SigningError as SigningError
from .errors import UnknownKey as UnknownKey
from .errors import UnsupportedAlgorithm as UnsupportedAlgorithm
from .errors import VerificationError as VerificationError
from .extensions import Policy as Policy
from .revocation import Revocation as Revocation
from .revocation import Revoker as Revoker
from .signer import SignedRequest as SignedRequest
from .signer import Signer as Signer
from .signer import sign_url as sign_url
from .verifier import SignedParams as SignedParams
from .verifier import VerifiedRequest as VerifiedRequest
from .verifier import Verifier as Verifier
from .verifier import parse_query as parse_query

__version__ = "0.1.0"

__all__ = [
    "BadSignature",
    "BodyMismatch",
    "Expired",
    "ExpiryTooLong",
    "MalformedRequest",
    "MissingHeader",
    "NotYetValid",
    "Policy",
    "Revocation",
    "RevocationError",
    "Revoker",
    "SignedParams",
    "SignedRequest",
    "Signer",
    "SigngateError",
    "SigningError",
    "UnknownKey",
    "UnsupportedAlgorithm",
    "VerificationError",
    "VerifiedRequest",
    "Verifier",
    "parse_query",
    "sign_url",
]
