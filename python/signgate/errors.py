"""signgate's exceptions, in one tree.

::

    SigngateError
    ├── SigningError (also ValueError)      bad input given to the signer
    ├── InvalidJSON            400  invalid_json   a JSON body a control must read is ambiguous or malformed
    └── VerificationError                   a request that must be refused
        ├── MalformedRequest       400  malformed      a signing parameter is missing or malformed
        ├── UnsupportedAlgorithm   400  unsupported_algorithm
        ├── ExpiryTooLong          400  expiry_too_long  longer than the verifier accepts
        ├── UnknownKey             401  unknown_key
        ├── Expired                401  expired        carries ``expired_by`` and ``now``
        ├── NotYetValid            401  not_yet_valid  dated in the future beyond the skew allowance
        ├── BadSignature           401  bad_signature
        ├── MissingHeader          401  missing_header a bound header is absent from the request
        └── BodyMismatch           401  body_mismatch  the body does not match what was bound

Every :class:`VerificationError` has a stable ``code`` (for machines) and ``status``
(the HTTP status the gateway answers with). Messages name what was wrong and how to fix it;
they never contain a secret, a signature or a header value.
"""

from __future__ import annotations


class SigngateError(Exception):
    """Base class of every exception signgate raises on purpose."""


class SigningError(SigngateError, ValueError):
    """The signer was given input it cannot sign; ``field`` names the argument."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class InvalidJSON(SigngateError):
    """A request body that policies or accounting must read is not strict JSON (see
    :mod:`signgate.strict_json`). ``message`` says what is wrong and where."""

    code = "invalid_json"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class VerificationError(SigngateError):
    """A request failed verification. ``code`` is stable; ``status`` is the HTTP status."""

    code = "verification_failed"
    status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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
        super().__init__(f"the signed URL expired {expired_by} s ago; ask the backend for a fresh one")
        self.expired_by = expired_by
        self.now = now


class NotYetValid(VerificationError):
    """X-Sw-Date lies further in the future than the verifier's clock-skew allowance."""

    code = "not_yet_valid"
    status = 401

    def __init__(self, ahead_by: int, skew: int, now: int) -> None:
        super().__init__(
            f"X-Sw-Date is {ahead_by} s in the future (allowed skew {skew} s); check the signing server's clock"
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
