"""The fuzzer's strategies (tests/fuzz_strategies.py): every operation gets requests, "valid" documents are valid
to the server's own decoder, each kind of broken body is drawn, and the request properties the fuzz test judges
answers by say what they claim."""

from __future__ import annotations

import dataclasses
import json
import re

import botocore.session
import orjson
import pytest
from botocore.model import StructureShape
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz_strategies import (
    BODY_KINDS,
    ShapeStrategies,
    body_mutations,
    encode_json,
    fuzz_requests,
    huge_list,
    huge_map,
    plain_request,
)
from trent.node.model.errors import KmsError
from trent.node.wire.protocol import MAX_BODY_BYTES
from trent.node.wire.validation import RequestDecoder

MODEL = botocore.session.get_session().get_service_model("kms")
# Members (as validation messages name them) whose strings have a pattern.
PATTERNED = {name[:1].lower() + name[1:] for shape_name in MODEL.shape_names
             if isinstance(shape := MODEL.shape_for(shape_name), StructureShape)
             for name, member in shape.members.items() if member.metadata.get("pattern")}
FAST = settings(max_examples=10, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def shapes() -> ShapeStrategies:
    return ShapeStrategies(MODEL, {"KeyId": ["alias/seeded"]})


@settings(FAST, max_examples=4)
@given(data=st.data())
def test_every_operation_gets_requests_for_itself(data: st.DataObject) -> None:
    shapes = ShapeStrategies(MODEL)
    for operation in MODEL.operation_names:
        request = data.draw(fuzz_requests(shapes, operation, ("us-east-1", "eu-west-1")))
        assert request.operation == operation
        assert isinstance(request.body, bytes)
        assert request.via in ("gateway", "region")
        assert request.sign_region in ("us-east-1", "eu-west-1", "xx-fake-1")


@pytest.mark.parametrize("operation", MODEL.operation_names)
def test_valid_documents_pass_the_servers_decoder(operation: str, shapes: ShapeStrategies) -> None:
    decoder = RequestDecoder(MODEL)
    input_shape = MODEL.operation_model(operation).input_shape

    @FAST
    @given(document=shapes.valid(input_shape))
    def check(document: object) -> None:
        try:
            decoder.decode(operation, orjson.loads(encode_json(document)))
        except KmsError as error:
            # Strings with a pattern are drawn from its regex and cut to the maximum length, so their lengths may
            # miss: the one way a "valid" value may be refused.
            assert error.code == "ValidationException", error.message
            paths = re.findall(r"at '([^']+)' failed", error.message or "")
            assert paths and all(path.rsplit(".", 1)[-1] in PATTERNED for path in paths), error.message

    check()


def test_huge_containers_come_near_their_size_cheaply() -> None:
    for target in (64 * 1024, MAX_BODY_BYTES - 4096):
        assert target * 0.9 <= len(encode_json(huge_list("Encrypt", target))) <= target * 1.1
        assert target * 0.9 <= len(encode_json(huge_map("v", target))) <= target * 1.1


def test_every_kind_of_broken_body_is_drawn() -> None:
    document = {"KeyId": "k", "Plaintext": "AA=="}
    seen: set[str] = set()

    @settings(max_examples=300, deadline=None, derandomize=True, database=None)
    @given(mutation=body_mutations(document))
    def look(mutation: tuple[str, bytes]) -> None:
        seen.add(mutation[0])

    look()
    assert seen == set(BODY_KINDS)


def test_request_properties_judge_what_is_sent() -> None:
    plain = plain_request("ListKeys", {}, "us-east-1")
    assert plain.may_succeed and not plain.oversize and not plain.mislabelled and not plain.http_layer
    assert json.loads(plain.body) == {}
    assert not dataclasses.replace(plain, auth="unsigned").may_succeed
    big = dataclasses.replace(plain, body=b" " * (MAX_BODY_BYTES + 1))
    assert big.oversize
    gzip_headers = (*plain.headers, ("Content-Encoding", "gzip"))
    mislabelled = dataclasses.replace(plain, headers=gzip_headers, encoding="gzip")
    assert mislabelled.mislabelled and mislabelled.decoded_as == "gzip"
    # Really compressed: judged by the size it inflates to.
    inflating = dataclasses.replace(mislabelled, body=b"x" * 100, encoded=True, plain_size=MAX_BODY_BYTES + 1)
    assert inflating.oversize and not inflating.mislabelled
    # The last Content-Encoding counts, and only one aiohttp knows.
    odd = dataclasses.replace(mislabelled, extra_headers=(("Content-Encoding", "gzip, junk"),))
    assert odd.decoded_as is None and not odd.mislabelled
    assert dataclasses.replace(plain, extra_headers=(("Content-Type", "text/plain"),)).http_layer
    assert dataclasses.replace(plain, extra_headers=(("Host", "x"),)).http_layer
    brotli = dataclasses.replace(plain, headers=(*plain.headers, ("Content-Encoding", "br")))
    assert not brotli.http_layer and brotli.mislabelled  # the handler refuses what it cannot undo
