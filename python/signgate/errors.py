"""signgate's exceptions, in one tree.

::

    SigngateError
    ├── SigningError (also ValueError)     bad input given to the signer; ``field`` names it
    ├── ConfigError (also ValueError)      gateway configuration that cannot work
    │   └── StoreURLError                    a store URL (never shows its password)
    ├── RevocationError (also ValueError)  a revocation that cannot work; ``field`` names it
    ├── CommandError                       a command-line usage error (exit status 2)
    ├── StoreError                         the shared store could not be reached or failed
    ├── UpstreamError                      the upstream failed; ``sent``: it may have got the request
    │   ├── ConnectError                     no name or no connection: nothing was sent
    │   ├── ForbiddenAddress                 the name resolves to a non-public address: nothing sent
    │   └── UpstreamTimeout                  the upstream sent nothing for the read timeout
    │       └── ConnectTimeout                 no connection within the connect timeout
    └── Refusal                            a request the gateway answers itself: ``status``, ``code``
        ├── VerificationError                the signature does not hold
        │   ├── MalformedRequest       400  malformed              a parameter (or the HTTP) is malformed
        │   ├── UnsupportedAlgorithm   400  unsupported_algorithm
        │   ├── ExpiryTooLong          400  expiry_too_long        longer than the verifier accepts
        │   ├── UnknownKey             401  unknown_key
        │   ├── Expired                401  expired                carries ``expired_by`` and ``now``
        │   ├── NotYetValid            401  not_yet_valid          dated beyond the clock-skew allowance
        │   ├── BadSignature           401  bad_signature
        │   ├── MissingHeader          401  missing_header         a bound header is absent
        │   └── BodyMismatch           401  body_mismatch          the body is not the bound one
        ├── Revoked                    401  revoked                carries ``scope`` (key, tenant, user, nonce)
        ├── Unauthorized               401  unauthorized           the admin endpoint's token is missing or wrong
        ├── InvalidJSON                400  invalid_json           a body a control reads is not strict JSON
        ├── ConfigRejected             400  config_rejected        a reload found the configuration broken
        ├── UpgradeNotSupported        400  upgrade_not_supported  WebSocket and other upgrades
        ├── PolicyViolation            403  policy_violation       ``rule`` names the broken rule
        ├── UpstreamNotAllowed         403  upstream_not_allowed
        ├── OriginNotAllowed           403  origin_not_allowed     a CORS preflight from another origin
        ├── NotFound                   404  not_found
        ├── ClientTimeout              408  client_timeout
        ├── Replayed                   409  replayed               a single-use URL used again
        ├── LengthRequired             411  length_required        a bound body sent chunked
        ├── BodyTooLarge               413  body_too_large
        ├── UnsupportedEncoding        415  unsupported_encoding   a compressed body a control reads
        ├── LimitExceeded              429  <limit>_exceeded       carries ``scope`` and ``limit``
        ├── HeadersTooLarge            431  headers_too_large
        ├── InternalError              500  internal_error         a fault of the gateway's, logged
        ├── UpstreamUnreachable        502  upstream_unreachable
        ├── AtCapacity                 503  at_capacity            streams or buffered bodies at their cap
        ├── StoreUnavailable           503  store_unavailable
        └── UpstreamTimedOut           504  upstream_timeout

Every :class:`Refusal` has a stable ``code`` (for machines), the HTTP ``status`` the gateway
answers with, and ``details`` for the JSON error object; ``retry_after`` becomes the
``Retry-After`` header. Messages name what was wrong and how to fix it; they never contain a
secret, a signature or a header value.
"""

from __future__ import annotations

from typing import Any


class SigngateError(Exception):
    """Base class of every exception signgate raises on purpose."""


class SigningError(SigngateError, ValueError):
    """The signer was given input it cannot sign; ``field`` names the argument."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ConfigError(SigngateError, ValueError):
    """Configuration that cannot work; the message names where and what."""


class StoreURLError(ConfigError):
    """A store URL that cannot work; the message names the part and never shows a password."""


class RevocationError(SigngateError, ValueError):
    """A revocation that cannot work (no subject, or one no signed URL could carry); ``field``
    names the argument."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class CommandError(SigngateError):
    """A usage error: printed as ``signgate <command>: error: <message>``, exit status 2."""


class StoreError(SigngateError):
    """The store could not be reached or answered with an error (the message names its kind)."""


class UpstreamError(SigngateError):
    """The upstream could not be reached, broke the connection or answered something that is not
    HTTP."""

    #: Whether the request may have reached the upstream (False: it failed before being sent).
    sent = True


class ConnectError(UpstreamError):
    """The upstream's name did not resolve, or no connection could be made: nothing was sent."""

    sent = False


class ForbiddenAddress(UpstreamError):
    """The upstream resolves to an address this gateway must not reach: nothing was sent."""

    sent = False

    def __init__(self, host: str, address: str) -> None:
        super().__init__(f"{host} resolves to {address}, a non-public address")
        self.host = host
        self.address = address


class UpstreamTimeout(UpstreamError):
    """The upstream did not connect, or sent nothing, within its timeout."""


class ConnectTimeout(UpstreamTimeout):
    """No connection within the connect timeout: nothing was sent."""

    sent = False


class Refusal(SigngateError):
    """A request the gateway answers itself, as JSON ``{"error": {"code", "message", ...details}}``.

    ``retry_after`` (seconds) becomes a ``Retry-After`` header; ``close`` asks the server to
    close the connection after the answer."""

    code = "refused"
    status = 400

    def __init__(self, message: str, *, retry_after: int | None = None, close: bool = False, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.close = close
        self.details = details


class VerificationError(Refusal):
    """A request failed verification. ``code`` is stable; ``status`` is the HTTP status."""

    code = "verification_failed"
    status = 401

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, **details)


class MalformedRequest(VerificationError):
    """A signing parameter is missing or malformed; ``param`` names it."""

    code = "malformed"
    status = 400

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


class UnsupportedAlgorithm(VerificationError):
    code = "unsupported_algorithm"
    status = 400


class ExpiryTooLong(VerificationError):
    code = "expiry_too_long"
    status = 400


class UnknownKey(VerificationError):
    code = "unknown_key"
    status = 401


class Expired(VerificationError):
    """The URL's lifetime is over. ``expired_by`` is in seconds; ``now`` is the verifier's time."""

    code = "expired"
    status = 401

    def __init__(self, expired_by: int, now: int) -> None:
        super().__init__(f"the signed URL expired {expired_by} s ago; ask the backend for a fresh one", now=now)
        self.expired_by = expired_by
        self.now = now


class NotYetValid(VerificationError):
    """X-Sw-Date lies further in the future than the verifier's clock-skew allowance."""

    code = "not_yet_valid"
    status = 401

    def __init__(self, ahead_by: int, skew: int, now: int) -> None:
        super().__init__(
            f"X-Sw-Date is {ahead_by} s in the future (allowed skew {skew} s); check the signing server's clock",
            now=now,
        )
        self.ahead_by = ahead_by
        self.now = now


class BadSignature(VerificationError):
    code = "bad_signature"
    status = 401


class MissingHeader(VerificationError):
    """A header named in X-Sw-SignedHeaders was not sent; ``header`` names it."""

    code = "missing_header"
    status = 401

    def __init__(self, header: str) -> None:
        super().__init__(
            f"the signed header {header[:40]!r} is missing from the request; "
            "send every header the backend returned with the signed URL"
        )
        self.header = header


class BodyMismatch(VerificationError):
    code = "body_mismatch"
    status = 401


class Revoked(Refusal):
    """The URL is covered by a revocation of its key, tenant, user or nonce (``scope``)."""

    code = "revoked"
    status = 401

    def __init__(self, scope: str) -> None:
        super().__init__(f"this signed URL has been revoked (its {scope}); ask the backend for a new one", scope=scope)
        self.scope = scope


class Unauthorized(Refusal):
    """The admin endpoint was called without its token, or with another."""

    code = "unauthorized"
    status = 401


class ConfigRejected(Refusal):
    """A reload asked of the admin endpoint found the configuration broken; the running one stays."""

    code = "config_rejected"
    status = 400


class InvalidJSON(Refusal):
    """A request body that policies or accounting must read is not strict JSON (see
    :mod:`signgate.strict_json`). ``message`` says what is wrong and where."""

    code = "invalid_json"
    status = 400


class UpgradeNotSupported(Refusal):
    code = "upgrade_not_supported"
    status = 400


class PolicyViolation(Refusal):
    """The body breaks a rule of the bound policy; ``rule`` names it (models, max_tokens, ...)."""

    code = "policy_violation"
    status = 403

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message, rule=rule)
        self.rule = rule


class UpstreamNotAllowed(Refusal):
    code = "upstream_not_allowed"
    status = 403


class OriginNotAllowed(Refusal):
    code = "origin_not_allowed"
    status = 403


class NotFound(Refusal):
    code = "not_found"
    status = 404


class ClientTimeout(Refusal):
    code = "client_timeout"
    status = 408


class Replayed(Refusal):
    code = "replayed"
    status = 409


class LengthRequired(Refusal):
    code = "length_required"
    status = 411


class BodyTooLarge(Refusal):
    code = "body_too_large"
    status = 413


class UnsupportedEncoding(Refusal):
    code = "unsupported_encoding"
    status = 415


class LimitExceeded(Refusal):
    """A request, stream or token limit is reached: ``code`` is ``<limit>_exceeded``; the details
    name the ``scope`` (key, tenant or user) and the ``limit``."""

    status = 429

    def __init__(self, limit_name: str, scope: str, limit: int, retry_after: int) -> None:
        super().__init__(
            f"the {scope}'s limit of {limit} {limit_name.replace('_', ' ')} is reached",
            retry_after=retry_after,
            scope=scope,
            limit=limit,
        )
        self.code = f"{limit_name}_exceeded"


class HeadersTooLarge(Refusal):
    code = "headers_too_large"
    status = 431


class InternalError(Refusal):
    code = "internal_error"
    status = 500


class UpstreamUnreachable(Refusal):
    code = "upstream_unreachable"
    status = 502


class AtCapacity(Refusal):
    code = "at_capacity"
    status = 503

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=1)


class StoreUnavailable(Refusal):
    code = "store_unavailable"
    status = 503


class UpstreamTimedOut(Refusal):
    code = "upstream_timeout"
    status = 504
