"""AWS JSON 1.1 at the wire edge: target parsing, body parsing, response encoding, and the one error shape."""

from __future__ import annotations

import base64
import gzip
import json
import zlib

import pytest

from trent.node.model.errors import KmsError, internal, invalid_ciphertext, not_found
from trent.node.wire.protocol import (
    CONTENT_TYPE,
    MAX_BODY_BYTES,
    decode_content,
    encode_error,
    encode_response,
    parse_body,
    parse_target,
    valid_text,
)


def test_constants() -> None:
    assert CONTENT_TYPE == "application/x-amz-json-1.1"
    assert MAX_BODY_BYTES == 1024 * 1024


# -- targets ---------------------------------------------------------------------------------------------------


def test_target_names_the_operation() -> None:
    assert parse_target("TrentService.GenerateDataKey") == "GenerateDataKey"


@pytest.mark.parametrize("target", [None, "", "GenerateDataKey", "trentservice.ListKeys", "DynamoDB_20120810.GetItem",
                                    "TrentService"])
def test_bad_target_is_unknown_operation(target: str | None) -> None:
    with pytest.raises(KmsError) as exc:
        parse_target(target)
    assert (exc.value.code, exc.value.status) == ("UnknownOperationException", 400)


# -- request bodies --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"   ", b"\r\n\t"])
def test_empty_body_is_an_empty_object(body: bytes) -> None:
    assert parse_body(body) == {}


def test_body_is_json() -> None:
    assert parse_body(b'{"KeyId": "alias/x", "Limit": 5, "DryRun": false, "Tags": []}') == {
        "KeyId": "alias/x", "Limit": 5, "DryRun": False, "Tags": []}
    assert parse_body('{"Description": "ünïcödé"}'.encode()) == {"Description": "ünïcödé"}


@pytest.mark.parametrize("body", [b"{", b"{'KeyId': 1}", b"KeyId=x", b'{"a": 1}}', b"\xff\xfe{}", b"[" * 100_000,
                                  b'{"a": "\xc3"}'])
def test_bad_body_is_a_serialization_exception(body: bytes) -> None:
    with pytest.raises(KmsError) as exc:
        parse_body(body)
    assert (exc.value.code, exc.value.status) == ("SerializationException", 400)
    assert exc.value.message


# -- responses -------------------------------------------------------------------------------------------------


def test_none_members_are_omitted_at_every_depth() -> None:
    payload = {
        "KeyId": "k",
        "NextMarker": None,
        "KeyMetadata": {"Description": "", "DeletionDate": None, "Enabled": False, "ValidTo": None},
        "Aliases": [{"AliasName": "alias/a", "TargetKeyId": None}, {"AliasName": "alias/b"}],
    }
    doc = json.loads(encode_response(payload))
    assert doc == {
        "KeyId": "k",
        "KeyMetadata": {"Description": "", "Enabled": False},
        "Aliases": [{"AliasName": "alias/a"}, {"AliasName": "alias/b"}],
    }
    assert b"null" not in encode_response(payload)


def test_bytes_are_standard_padded_base64_everywhere() -> None:
    blob = bytes(range(256))
    payload = {"CiphertextBlob": blob, "Plaintext": b"\xfb\xff", "Empty": b"", "List": [b"ab", {"B": b"a"}]}
    doc = json.loads(encode_response(payload))
    assert doc["CiphertextBlob"] == base64.b64encode(blob).decode()
    assert base64.b64decode(doc["CiphertextBlob"], validate=True) == blob
    assert doc["Plaintext"] == "+/8="  # standard alphabet with padding, not urlsafe
    assert doc["Empty"] == ""
    assert doc["List"] == ["YWI=", {"B": "YQ=="}]


def test_numbers_booleans_and_tuples_stay_native() -> None:
    doc = json.loads(encode_response({"CreationDate": 1_700_000_000.25, "Limit": 3, "Truncated": True,
                                      "EncryptionAlgorithms": ("SYMMETRIC_DEFAULT",)}))
    assert doc == {"CreationDate": 1_700_000_000.25, "Limit": 3, "Truncated": True,
                   "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"]}


def test_empty_response_is_an_empty_object() -> None:
    assert encode_response({}) == b"{}"


# -- errors ----------------------------------------------------------------------------------------------------


def test_error_body_is_exactly_type_and_message() -> None:
    error = not_found("Key 'arn:aws:kms:us-east-1:111122223333:key/x' does not exist")
    assert json.loads(encode_error(error)) == {
        "__type": "NotFoundException", "message": "Key 'arn:aws:kms:us-east-1:111122223333:key/x' does not exist"}


def test_invalid_ciphertext_has_no_message() -> None:
    assert json.loads(encode_error(invalid_ciphertext())) == {"__type": "InvalidCiphertextException"}
    assert invalid_ciphertext().status == 400


def test_internal_error_is_a_retryable_500() -> None:
    error = internal()
    assert (error.code, error.status) == ("KMSInternalException", 500)
    assert json.loads(encode_error(error)) == {"__type": "KMSInternalException", "message": error.message}


def test_error_messages_are_json_escaped() -> None:
    error = KmsError("ValidationException", 'Value "a\\b" at \'x\'\nfailed')
    assert json.loads(encode_error(error))["message"] == 'Value "a\\b" at \'x\'\nfailed'


# -- text from the wire ----------------------------------------------------------------------------------------


def test_valid_text_turns_undecodable_header_bytes_into_replacement_characters() -> None:
    assert valid_text("plain") == "plain"
    assert valid_text("tést \u202e") == "tést \u202e"
    assert valid_text(b"r\xfcgion".decode("utf-8", "surrogateescape")) == "r\ufffdgion"
    assert valid_text("lone \ud800") == "lone ?"


def test_an_error_quoting_header_bytes_that_are_not_utf8_is_still_a_kms_error() -> None:
    # The gateway quotes the credential scope's region: sent as b"\xfc", it reached orjson as a lone surrogate and the
    # client got a 500 instead of InvalidSignatureException.
    region = b"\xfc".decode("utf-8", "surrogateescape")
    message = f"Credential should be scoped to a valid region, not '{region}'."
    error = KmsError("InvalidSignatureException", message, 403)
    assert json.loads(encode_error(error)) == {
        "__type": "InvalidSignatureException",
        "message": "Credential should be scoped to a valid region, not '\ufffd'.",
    }


def test_bodies_are_inflated_as_their_content_encoding_says() -> None:
    doc = b'{"KeyId": "alias/a"}'
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert decode_content("gzip", gzip.compress(doc)) == doc
    assert decode_content(" Deflate ", zlib.compress(doc)) == doc
    assert decode_content("deflate", raw_deflate.compress(doc) + raw_deflate.flush()) == doc
    assert decode_content("identity", doc) == decode_content("x-unknown", doc) == doc  # taken as no coding


@pytest.mark.parametrize("encoding, body", [
    ("gzip", b"{}"),  # not gzip at all
    ("gzip", gzip.compress(b'{"KeyId": "k"}')[:-6]),  # cut short
    ("gzip", gzip.compress(b"{}") + b"junk"),  # bytes after its end
    ("deflate", b"\xff\xfe"),
    ("br", b"{}"), ("zstd", b"{}"),  # compressed in a way this server cannot undo
])
def test_a_body_that_does_not_inflate_is_a_serialization_exception(encoding: str, body: bytes) -> None:
    with pytest.raises(KmsError) as caught:
        decode_content(encoding, body)
    assert (caught.value.code, caught.value.status) == ("SerializationException", 400)


def test_a_body_is_never_inflated_past_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (64 * MAX_BODY_BYTES))  # 64 MiB in about 64 KB
    with pytest.raises(KmsError) as caught:
        decode_content("gzip", bomb)
    assert (caught.value.code, caught.value.status) == ("ValidationException", 413)
    assert decode_content("gzip", gzip.compress(b" " * MAX_BODY_BYTES)) == b" " * MAX_BODY_BYTES
