"""SigV4 verification runs its checks in AWS's order: a request with several faults gets the error of the first
check it fails (the caller's region and key before the clock, the clock before the payload and the signature)."""

from __future__ import annotations

import hashlib

import pytest

from tests.unit.test_sigv4 import BODY, T0_EPOCH, UNRECOGNIZED, expect, frozen, sign, verifier
from trent.node.clock import FixedClock
from trent.node.model.errors import KmsError

__all__ = ["frozen"]  # the fixture, used by name
LATE = FixedClock(T0_EPOCH + 3600)  # an hour after signing: expired
EXPIRED = ("Signature expired: 20270115T120000Z is now earlier than 20270115T125500Z "
           "(20270115T130000Z - 5 min.)")


def test_region_before_clock_and_signature(frozen: None) -> None:
    headers = sign(region="eu-west-1")
    with pytest.raises(KmsError) as err:
        verifier(LATE).verify("POST", "/", "", headers, BODY + b" ", expected_region="us-east-1")
    expect(err, "InvalidSignatureException", 403, "Credential should be scoped to a valid region, not 'eu-west-1'.")


def test_unknown_key_before_clock(frozen: None) -> None:
    headers = sign(ak="AKIAUNKNOWNEXAMPLE00")
    with pytest.raises(KmsError) as err:
        verifier(LATE).verify("POST", "/", "", headers, BODY)
    expect(err, "UnrecognizedClientException", 400, UNRECOGNIZED)


def test_clock_before_payload_and_signature(frozen: None) -> None:
    headers = sign(sk="not-the-secret")
    with pytest.raises(KmsError) as err:
        verifier(LATE).verify("POST", "/", "", headers, BODY + b" ")
    expect(err, "InvalidSignatureException", 403, EXPIRED)


def test_declared_payload_hash_before_signature(frozen: None) -> None:
    headers = sign(sk="not-the-secret", headers={"X-Amz-Content-SHA256": hashlib.sha256(b"other").hexdigest()})
    with pytest.raises(KmsError) as err:
        verifier(FixedClock(T0_EPOCH)).verify("POST", "/", "", headers, BODY)
    expect(err, "InvalidSignatureException", 403,
           "The provided 'x-amz-content-sha256' header does not match what was computed.")
