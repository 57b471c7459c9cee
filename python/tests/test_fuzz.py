"""A CI-sized share of the verifier fuzzer (``fuzz_verifier.py``; ``make fuzz`` runs the full one).

50,000 generated and mutated requests through ``parse_query`` and ``Verifier.verify_request``,
and 1,000 hypothesis examples: every refusal must be a ``VerificationError`` subclass with a known
code, and no message may carry a secret or a signature. The seed is fixed so that CI is
repeatable; set ``FUZZ_SEED`` to explore others.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from fuzz_verifier import (
    CODES,
    SECRET,
    Case,
    Failure,
    check,
    hypothesis_run,
    make_verifier,
    mutation_loop,
    seeds,
)

from signgate import BadSignature, VerifiedRequest

SEED = int(os.environ.get("FUZZ_SEED", "20261127"))


@pytest.mark.slow
def test_mutation_loop_ci_run() -> None:
    report = mutation_loop(50_000, seed=SEED)
    print("\n" + report.summary())
    assert not report.failures, report.summary()
    assert report.cases == 50_000
    # The fuzzer reaches every refusal and gets genuine (re-signed) requests through, so it
    # exercises the whole verifier, not just the parser's first line.
    assert set(report.outcomes) == CODES | {"accepted"}, report.outcomes


def test_hypothesis_ci_run() -> None:
    report = hypothesis_run(1000)
    print("\n" + report.summary())
    assert report.cases == 1000


def test_seeds_verify() -> None:
    verifier = make_verifier()
    for case in seeds():
        assert check(verifier, case, set()) == "accepted"


class _Crashes:
    def verify_request(self, *args: object, **kwargs: object) -> VerifiedRequest:
        raise KeyError("content-length")


class _Echoes:
    def __init__(self, text: str) -> None:
        self.text = text

    def verify_request(self, *args: object, **kwargs: object) -> VerifiedRequest:
        raise BadSignature(f"does not match {self.text}")


def test_the_oracle_catches_what_it_must() -> None:
    case = seeds()[0]
    with pytest.raises(Failure, match="unhandled KeyError"):
        check(_Crashes(), case, set())  # type: ignore[arg-type]
    signature = case.query.rsplit("=", 1)[1]
    with pytest.raises(Failure, match="holds a signature"):
        check(_Echoes(signature), case, {signature})  # type: ignore[arg-type]
    with pytest.raises(Failure, match="holds a secret"):
        check(_Echoes(SECRET), case, set())  # type: ignore[arg-type]


def _replace(case: Case, name: str, value: str) -> Case:
    parts = [f"{name}={value}" if p.startswith(name + "=") else p for p in case.query.split("&")]
    return replace(case, query="&".join(parts))


def _found() -> list[tuple[str, Case, str]]:
    """Inputs the fuzzer found, each of which once escaped as something other than a
    VerificationError or put a signature into a message; each must now give exactly this code."""
    base = seeds()[0]
    signature = base.query.rsplit("=", 1)[1]
    return [
        ("non-ASCII signature of 64 characters", _replace(base, "X-Sw-Signature", "%C3%A9" * 64), "malformed"),
        ("lone surrogate before an escape", replace(base, query=base.query + "&X-Sw-Proxy=%41\ud800"), "malformed"),
        ("lone surrogate in a raw value", replace(base, query=base.query + "&x=\udcff"), "malformed"),
        ("lone surrogate in the method", replace(base, method="GET\ud800"), "bad_signature"),
        ("signature moved into SignedHeaders", _replace(base, "X-Sw-SignedHeaders", signature), "missing_header"),
    ]


@pytest.mark.parametrize("index", range(5))
def test_inputs_the_fuzzer_found(index: int) -> None:
    name, case, code = _found()[index]
    signatures = {seeds()[0].query.rsplit("=", 1)[1]}
    assert check(make_verifier(), case, signatures) == code, name
