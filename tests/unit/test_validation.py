"""RequestDecoder against the real botocore KMS model: types, conversions and AWS-format violations."""

from __future__ import annotations

import base64
import os
import time
from typing import Any

import botocore.session
import pytest

from trent.node.model.errors import KmsError
from trent.node.wire.validation import RequestDecoder, member_path_name, translate_java_regex

KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture(scope="module")
def model() -> Any:
    return botocore.session.get_session().get_service_model("kms")


@pytest.fixture(scope="module")
def decoder(model: Any) -> RequestDecoder:
    return RequestDecoder(model)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def error_of(decoder: RequestDecoder, operation: str, params: object) -> KmsError:
    with pytest.raises(KmsError) as info:
        decoder.decode(operation, params)
    return info.value


def validation_message(decoder: RequestDecoder, operation: str, params: object) -> str:
    err = error_of(decoder, operation, params)
    assert err.code == "ValidationException", err
    assert err.status == 400
    assert err.message is not None
    return err.message


def assert_serialization(decoder: RequestDecoder, operation: str, params: object) -> None:
    err = error_of(decoder, operation, params)
    assert err.code == "SerializationException", err
    assert err.status == 400
    assert err.message


# -- operations ------------------------------------------------------------------------------------


def test_operation_names_match_model(decoder: RequestDecoder, model: Any) -> None:
    assert decoder.operation_names() == list(model.operation_names)
    assert {"Encrypt", "Decrypt", "CreateKey", "GenerateRandom"} <= set(decoder.operation_names())


def test_unknown_operation(decoder: RequestDecoder) -> None:
    err = error_of(decoder, "Frobnicate", {})
    assert err.code == "UnknownOperationException"
    assert err.message is None


def test_every_model_pattern_is_enforced(decoder: RequestDecoder) -> None:
    # If a botocore upgrade brings a pattern the translator cannot express, this flags it.
    assert decoder.unenforced_patterns == {}


# -- success paths and conversions -----------------------------------------------------------------


def test_blob_round_trip_and_new_dict(decoder: RequestDecoder) -> None:
    plaintext = os.urandom(64)
    params = {"KeyId": KEY_ID, "Plaintext": b64(plaintext), "EncryptionContext": {"a": "b"}, "DryRun": False}
    out = decoder.decode("Encrypt", params)
    assert out == {"KeyId": KEY_ID, "Plaintext": plaintext, "EncryptionContext": {"a": "b"}, "DryRun": False}
    assert out is not params
    assert params["Plaintext"] == b64(plaintext)  # input untouched


@pytest.mark.parametrize("size", [1, 2, 3, 4096])
def test_blob_sizes_at_bounds_decode(decoder: RequestDecoder, size: int) -> None:
    data = os.urandom(size)
    assert decoder.decode("Encrypt", {"KeyId": KEY_ID, "Plaintext": b64(data)})["Plaintext"] == data


def test_unknown_members_dropped(decoder: RequestDecoder) -> None:
    out = decoder.decode("DescribeKey", {"KeyId": KEY_ID, "Bogus": [1, 2], "keyId": "x"})
    assert out == {"KeyId": KEY_ID}


def test_null_and_empty_body(decoder: RequestDecoder) -> None:
    assert decoder.decode("ListKeys", None) == {}
    assert decoder.decode("ListKeys", {}) == {}
    # A member sent as JSON null is absent.
    assert decoder.decode("ListKeys", {"Limit": None}) == {}


def test_timestamps_become_float(decoder: RequestDecoder) -> None:
    base = {"KeyId": KEY_ID, "ImportToken": b64(b"t"), "EncryptedKeyMaterial": b64(b"m")}
    out = decoder.decode("ImportKeyMaterial", {**base, "ValidTo": 1700000000})
    assert out["ValidTo"] == 1700000000.0
    assert type(out["ValidTo"]) is float
    assert decoder.decode("ImportKeyMaterial", {**base, "ValidTo": 1700000000.25})["ValidTo"] == 1700000000.25
    assert out["ImportToken"] == b"t"
    assert out["EncryptedKeyMaterial"] == b"m"
    for bad in ("2024-01-01T00:00:00Z", True, [1], float("nan"), float("inf")):
        assert_serialization(decoder, "ImportKeyMaterial", {**base, "ValidTo": bad})


def test_integers(decoder: RequestDecoder) -> None:
    assert decoder.decode("GenerateRandom", {"NumberOfBytes": 32}) == {"NumberOfBytes": 32}
    out = decoder.decode("GenerateRandom", {"NumberOfBytes": 32.0})  # integral JSON number
    assert out == {"NumberOfBytes": 32}
    assert type(out["NumberOfBytes"]) is int
    for bad in ("32", True, False, 32.5, [32], {"n": 32}, 2**31, -(2**31) - 1):
        assert_serialization(decoder, "GenerateRandom", {"NumberOfBytes": bad})


def test_booleans(decoder: RequestDecoder) -> None:
    assert decoder.decode("DescribeKey", {"KeyId": KEY_ID}) == {"KeyId": KEY_ID}
    ok = decoder.decode(
        "PutKeyPolicy", {"KeyId": KEY_ID, "Policy": "{}", "BypassPolicyLockoutSafetyCheck": True}
    )
    assert ok["BypassPolicyLockoutSafetyCheck"] is True
    for bad in ("true", 1, 0, 1.0, [True], {"v": True}):
        assert_serialization(
            decoder, "PutKeyPolicy", {"KeyId": KEY_ID, "Policy": "{}", "BypassPolicyLockoutSafetyCheck": bad}
        )


def test_nested_structures_decode(decoder: RequestDecoder) -> None:
    arn = "arn:aws:s3:::my-bucket-name"  # no 12-digit account field, so SourceArn's pattern rejects it
    constraints = {"EncryptionContextSubset": {"Department": "IT"}, "EncryptionContextEquals": {}}
    out = decoder.decode(
        "CreateGrant",
        {
            "KeyId": KEY_ID,
            "GranteePrincipal": "arn:aws:iam::111122223333:role/r",
            "Operations": ["Encrypt"],
            "Constraints": constraints,
        },
    )
    assert out["Constraints"] == constraints
    assert out["Constraints"] is not constraints
    assert out["Operations"] == ["Encrypt"]

    doc = os.urandom(300)
    out = decoder.decode(
        "Decrypt",
        {
            "CiphertextBlob": b64(b"c" * 20),
            "Recipient": {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": b64(doc)},
        },
    )
    assert out["Recipient"] == {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": doc}
    assert out["CiphertextBlob"] == b"c" * 20

    msg = validation_message(
        decoder,
        "CreateGrant",
        {"KeyId": KEY_ID, "Operations": ["Encrypt"], "Constraints": {"SourceArn": arn}},
    )
    pattern = "^arn:aws[a-z0-9-]*:[a-z0-9-]+:[a-z0-9-]*:[0-9]{12}:.+$"
    assert msg == (
        f"1 validation error detected: Value '{arn}' at 'constraints.sourceArn' failed to satisfy "
        f"constraint: Member must satisfy regular expression pattern: {pattern}"
    )


def test_tags_decode(decoder: RequestDecoder) -> None:
    tags = [{"TagKey": "k", "TagValue": ""}, {"TagKey": "k2", "TagValue": "v"}]
    assert decoder.decode("TagResource", {"KeyId": KEY_ID, "Tags": tags}) == {"KeyId": KEY_ID, "Tags": tags}


# -- AWS-format validation messages ---------------------------------------------------------------


def test_enum_lists_all_values_in_model_order(decoder: RequestDecoder, model: Any) -> None:
    values = model.shape_for("KeySpec").enum
    assert values[:3] == ["RSA_2048", "RSA_3072", "RSA_4096"] and "SYMMETRIC_DEFAULT" in values
    assert validation_message(decoder, "CreateKey", {"KeySpec": "NOPE"}) == (
        "1 validation error detected: Value 'NOPE' at 'keySpec' failed to satisfy constraint: "
        f"Member must satisfy enum value set: [{', '.join(values)}]"
    )
    assert decoder.decode("CreateKey", {"KeySpec": "SYMMETRIC_DEFAULT"}) == {"KeySpec": "SYMMETRIC_DEFAULT"}


def test_plaintext_too_long_value_omitted(decoder: RequestDecoder) -> None:
    msg = validation_message(decoder, "Encrypt", {"KeyId": KEY_ID, "Plaintext": b64(b"x" * 5000)})
    assert msg == (
        "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: "
        "Member must have length less than or equal to 4096"
    )


def test_plaintext_empty_violates_blob_min(decoder: RequestDecoder) -> None:
    msg = validation_message(decoder, "Encrypt", {"KeyId": KEY_ID, "Plaintext": b64(b"")})
    assert msg == (
        "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1"
    )


def test_non_sensitive_blob_value_also_omitted(decoder: RequestDecoder) -> None:
    msg = validation_message(decoder, "Decrypt", {"CiphertextBlob": b64(b"c" * 6145)})
    assert msg == (
        "1 validation error detected: Value at 'ciphertextBlob' failed to satisfy constraint: "
        "Member must have length less than or equal to 6144"
    )


def test_generate_random_max(decoder: RequestDecoder) -> None:
    assert validation_message(decoder, "GenerateRandom", {"NumberOfBytes": 2000}) == (
        "1 validation error detected: Value '2000' at 'numberOfBytes' failed to satisfy constraint: "
        "Member must have value less than or equal to 1024"
    )
    assert decoder.decode("GenerateRandom", {"NumberOfBytes": 1024}) == {"NumberOfBytes": 1024}


def test_list_keys_limit(decoder: RequestDecoder) -> None:
    assert validation_message(decoder, "ListKeys", {"Limit": 5000}) == (
        "1 validation error detected: Value '5000' at 'limit' failed to satisfy constraint: "
        "Member must have value less than or equal to 1000"
    )
    assert validation_message(decoder, "ListKeys", {"Limit": 0}) == (
        "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1"
    )


def test_alias_name_pattern(decoder: RequestDecoder) -> None:
    msg = validation_message(decoder, "CreateAlias", {"AliasName": "alias/bad name!", "TargetKeyId": KEY_ID})
    assert msg == (
        "1 validation error detected: Value 'alias/bad name!' at 'aliasName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$"
    )
    ok = {"AliasName": "alias/good_name-1:x", "TargetKeyId": KEY_ID}
    assert decoder.decode("CreateAlias", ok) == ok
    # Java's $ does not let a trailing newline through a whole-value match either.
    validation_message(decoder, "CreateAlias", {"AliasName": "alias/x\n", "TargetKeyId": KEY_ID})


def test_unanchored_patterns_match_whole_value(decoder: RequestDecoder) -> None:
    assert (
        decoder.decode("GetKeyPolicy", {"KeyId": KEY_ID, "PolicyName": "default"})["PolicyName"] == "default"
    )
    assert validation_message(decoder, "GetKeyPolicy", {"KeyId": KEY_ID, "PolicyName": "my policy"}) == (
        "1 validation error detected: Value 'my policy' at 'policyName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [\\w]+"
    )
    # PolicyType allows tab/LF/CR and U+0020..U+00FF only, for the whole document.
    assert decoder.decode("PutKeyPolicy", {"KeyId": KEY_ID, "Policy": '{\n\t"a": "\u00e9"\r\n}'})
    msg = validation_message(decoder, "PutKeyPolicy", {"KeyId": KEY_ID, "Policy": '{"a": "\u20ac"}'})
    assert "at 'policy' failed to satisfy constraint: Member must satisfy regular expression pattern: " in msg


def test_tag_key_too_long_path(decoder: RequestDecoder) -> None:
    key = "k" * 200
    msg = validation_message(
        decoder, "TagResource", {"KeyId": KEY_ID, "Tags": [{"TagKey": key, "TagValue": "v"}]}
    )
    assert msg == (
        f"1 validation error detected: Value '{key}' at 'tags.1.member.tagKey' failed to satisfy constraint: "
        "Member must have length less than or equal to 128"
    )


def test_second_list_element_and_missing_nested_required(decoder: RequestDecoder) -> None:
    tags = [{"TagKey": "a", "TagValue": "b"}, {"TagKey": "c"}]
    msg = validation_message(decoder, "TagResource", {"KeyId": KEY_ID, "Tags": tags})
    assert msg == (
        "1 validation error detected: Value null at 'tags.2.member.tagValue' failed to satisfy constraint: "
        "Member must not be null"
    )


def test_two_violations_in_model_member_order(decoder: RequestDecoder) -> None:
    # Body order is the reverse of model order; the message follows the model (KeyId before Limit).
    msg = validation_message(decoder, "ListAliases", {"Limit": 5000, "KeyId": ""})
    assert msg == (
        "2 validation errors detected: "
        "Value '' at 'keyId' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1; "
        "Value '5000' at 'limit' failed to satisfy constraint: "
        "Member must have value less than or equal to 1000"
    )


def test_all_violations_gathered_across_kinds(decoder: RequestDecoder) -> None:
    msg = validation_message(
        decoder,
        "Encrypt",
        {"Plaintext": b64(b"x" * 4097), "EncryptionAlgorithm": "ROT13", "GrantTokens": ["t"] * 11},
    )
    clauses = msg.split(": ", 1)[1].split("; ")
    assert msg.startswith("4 validation errors detected: ")
    assert clauses[0] == "Value null at 'keyId' failed to satisfy constraint: Member must not be null"
    assert clauses[1] == (
        "Value at 'plaintext' failed to satisfy constraint: "
        "Member must have length less than or equal to 4096"
    )
    assert clauses[2] == (
        f"Value '[{', '.join(['t'] * 11)}]' at 'grantTokens' failed to satisfy constraint: "
        "Member must have length less than or equal to 10"
    )
    assert clauses[3].startswith(
        "Value 'ROT13' at 'encryptionAlgorithm' failed to satisfy constraint: "
        "Member must satisfy enum value set: "
        "[SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256"
    )


def test_missing_required_members(decoder: RequestDecoder) -> None:
    assert validation_message(decoder, "Encrypt", {}) == (
        "2 validation errors detected: "
        "Value null at 'keyId' failed to satisfy constraint: Member must not be null; "
        "Value null at 'plaintext' failed to satisfy constraint: Member must not be null"
    )
    assert validation_message(decoder, "DescribeKey", {"KeyId": None}) == (
        "1 validation error detected: "
        "Value null at 'keyId' failed to satisfy constraint: Member must not be null"
    )
    assert validation_message(decoder, "DescribeKey", None).startswith(
        "1 validation error detected: Value null"
    )


def test_scalar_list_element_violations(decoder: RequestDecoder) -> None:
    msg = validation_message(
        decoder, "CreateGrant", {"KeyId": KEY_ID, "Operations": ["Encrypt", "Nope", None]}
    )
    clauses = msg.split(": ", 1)[1].split("; ")
    assert msg.startswith("2 validation errors detected: ")
    assert clauses[0].startswith(
        "Value 'Nope' at 'operations.2.member' failed to satisfy constraint: "
        "Member must satisfy enum value set: "
        "[Decrypt, Encrypt, "
    )
    assert clauses[1] == (
        "Value null at 'operations.3.member' failed to satisfy constraint: Member must not be null"
    )
    msg = validation_message(decoder, "DescribeKey", {"KeyId": KEY_ID, "GrantTokens": ["ok", ""]})
    assert msg == (
        "1 validation error detected: Value '' at 'grantTokens.2.member' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1"
    )


def test_list_min_and_nested_enum(decoder: RequestDecoder) -> None:
    assert validation_message(decoder, "ListKeys", {"ResourceOwners": []}) == (
        "1 validation error detected: Value '[]' at 'resourceOwners' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1"
    )
    msg = validation_message(decoder, "Decrypt", {"Recipient": {"KeyEncryptionAlgorithm": "RSA"}})
    assert msg == (
        "1 validation error detected: Value 'RSA' at 'recipient.keyEncryptionAlgorithm' failed to satisfy "
        "constraint: Member must satisfy enum value set: [RSAES_OAEP_SHA_256]"
    )


def test_sensitive_strings_omitted_including_nested(decoder: RequestDecoder) -> None:
    msg = validation_message(
        decoder, "CreateCustomKeyStore", {"CustomKeyStoreName": "s", "KeyStorePassword": "short"}
    )
    assert msg == (
        "1 validation error detected: Value at 'keyStorePassword' failed to satisfy constraint: "
        "Member must have length greater than or equal to 7"
    )
    creds = {"AccessKeyId": "lowercase-not-base32!", "RawSecretAccessKey": "s" * 43}
    msg = validation_message(
        decoder,
        "CreateCustomKeyStore",
        {"CustomKeyStoreName": "s", "XksProxyAuthenticationCredential": creds},
    )
    assert msg == (
        "1 validation error detected: "
        "Value at 'xksProxyAuthenticationCredential.accessKeyId' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: ^[A-Z2-7]+$"
    )
    assert "lowercase" not in msg


def test_decoder_is_reusable_after_errors(decoder: RequestDecoder) -> None:
    validation_message(decoder, "GenerateRandom", {"NumberOfBytes": 0})
    assert decoder.decode("GenerateRandom", {"NumberOfBytes": 1}) == {"NumberOfBytes": 1}


# -- SerializationException ------------------------------------------------------------------------


@pytest.mark.parametrize("body", [[], "KeyId", 7, True, [{"KeyId": KEY_ID}]])
def test_non_object_body(decoder: RequestDecoder, body: object) -> None:
    assert_serialization(decoder, "DescribeKey", body)


@pytest.mark.parametrize("value", [7, True, ["a"], {"a": "b"}, 1.5])
def test_wrong_type_for_string(decoder: RequestDecoder, value: object) -> None:
    assert_serialization(decoder, "DescribeKey", {"KeyId": value})


def test_integer_message_style(decoder: RequestDecoder) -> None:
    err = error_of(decoder, "GenerateRandom", {"NumberOfBytes": "32"})
    assert err.message == "STRING_VALUE can not be converted to an Integer"


@pytest.mark.parametrize(
    "value",
    ["not base64!", "Zm9", "Zm9v\n", "Zm9v====", "Zm9v=", "Zm9vYg", "=Zm9v", "Zm9v\u00e9", 12, [], {}],
)
def test_bad_blob(decoder: RequestDecoder, value: object) -> None:
    assert_serialization(decoder, "Encrypt", {"KeyId": KEY_ID, "Plaintext": value})


def test_type_error_wins_over_validation(decoder: RequestDecoder) -> None:
    # AWS deserialises before validating: a type error anywhere means SerializationException.
    assert_serialization(decoder, "Encrypt", {"KeyId": "", "Plaintext": "!!"})


@pytest.mark.parametrize(
    ("operation", "params"),
    [
        ("Encrypt", {"KeyId": KEY_ID, "Plaintext": b64(b"x"), "EncryptionContext": {"a": 1}}),
        ("Encrypt", {"KeyId": KEY_ID, "Plaintext": b64(b"x"), "EncryptionContext": ["a"]}),
        ("Encrypt", {"KeyId": KEY_ID, "Plaintext": b64(b"x"), "GrantTokens": "t"}),
        ("Encrypt", {"KeyId": KEY_ID, "Plaintext": b64(b"x"), "DryRun": "false"}),
        ("TagResource", {"KeyId": KEY_ID, "Tags": [["TagKey", "k"]]}),
        ("TagResource", {"KeyId": KEY_ID, "Tags": {"TagKey": "k", "TagValue": "v"}}),
        ("CreateGrant", {"KeyId": KEY_ID, "Operations": ["Encrypt"], "Constraints": "x"}),
        ("Decrypt", {"Recipient": {"AttestationDocument": "%%%"}}),
    ],
)
def test_nested_type_errors(decoder: RequestDecoder, operation: str, params: object) -> None:
    assert_serialization(decoder, operation, params)


def test_map_null_value_is_a_violation(decoder: RequestDecoder) -> None:
    msg = validation_message(
        decoder, "Encrypt", {"KeyId": KEY_ID, "Plaintext": b64(b"x"), "EncryptionContext": {"k": None}}
    )
    assert msg == (
        "1 validation error detected: Value null at 'encryptionContext.k.member.value' failed to satisfy "
        "constraint: Member must not be null"
    )


# -- helpers ---------------------------------------------------------------------------------------


def test_member_path_name() -> None:
    assert member_path_name("KeySpec") == "keySpec"
    assert member_path_name("XksProxyUriPath") == "xksProxyUriPath"
    assert member_path_name("") == ""


def test_translate_java_regex() -> None:
    dot = translate_java_regex("a.c")
    assert dot is not None and dot.fullmatch("abc") and not dot.fullmatch("a\rc")
    posix = translate_java_regex(r"\p{Alpha}[\p{Digit}_]+\P{Upper}")
    assert posix is not None and posix.fullmatch("x1_9a") and not posix.fullmatch("x1_9A")
    ascii_word = translate_java_regex(r"[\w]+")
    assert ascii_word is not None and not ascii_word.fullmatch("caf\u00e9")  # Java's \w is ASCII
    quoted = translate_java_regex(r"\Q.*\E!")
    assert quoted is not None and quoted.fullmatch(".*!") and not quoted.fullmatch("ab!")
    latin1 = translate_java_regex("[\\u0020-\\u00FF]*")
    assert latin1 is not None and latin1.fullmatch("a \u00ff") and not latin1.fullmatch("\u0100")
    for unsupported in (r"\p{L}+", "[a-z&&[^b]]", "[a[bc]]", r"a\Z", "[abc", "(?<name>x)", r"\x{41}"):
        assert translate_java_regex(unsupported) is None, unsupported


def test_every_model_pattern_translates(model: Any) -> None:
    for name in model.shape_names:
        pattern = model.shape_for(name).metadata.get("pattern")
        if pattern is not None:
            assert translate_java_regex(pattern) is not None, (name, pattern)


# -- bounded work: a request may carry hundreds of thousands of violations ---------------------------------------


ENUM_CLAUSE = "failed to satisfy constraint: Member must satisfy enum value set: ["


def test_ten_violations_counted_and_listed_of_many(decoder: RequestDecoder) -> None:
    # AWS's validator stops at ten: "10 validation errors detected", then the first ten clauses.
    msg = validation_message(decoder, "CreateGrant", {
        "KeyId": KEY_ID, "GranteePrincipal": "arn:aws:iam::111122223333:user/x", "Operations": ["Nope"] * 25})
    assert msg.startswith("10 validation errors detected: Value 'Nope' at 'operations.1.member' " + ENUM_CLAUSE)
    clauses = msg.split(": ", 1)[1].split("; ")
    assert [c.split("'")[3] for c in clauses] == [f"operations.{i}.member" for i in range(1, 11)]


def test_eleven_violations_of_different_kinds_are_ten(decoder: RequestDecoder) -> None:
    msg = validation_message(decoder, "Encrypt", {
        "Plaintext": b64(b"x" * 4097), "EncryptionAlgorithm": "ROT13", "GrantTokens": [""] * 11})
    clauses = msg.split(": ", 1)[1].split("; ")
    assert msg.startswith("10 validation errors detected: ") and len(clauses) == 10
    # Model member order: keyId (absent, required), plaintext, the token list, its elements; the algorithm comes
    # after the tokens in the model, so the eleventh and later violations (it among them) are not listed.
    assert clauses[0] == "Value null at 'keyId' failed to satisfy constraint: Member must not be null"
    assert clauses[1].startswith("Value at 'plaintext' ")
    assert clauses[2].startswith("Value '[, , , , , , , , , , ]' at 'grantTokens' ")
    assert clauses[-1].startswith("Value '' at 'grantTokens.7.member' ")
    assert "encryptionAlgorithm" not in msg


def test_huge_invalid_list_is_cheap_and_the_message_small(decoder: RequestDecoder) -> None:
    params = {"KeyId": KEY_ID, "GranteePrincipal": "arn:aws:iam::111122223333:user/x", "Operations": ["Nope"] * 260_000}
    started = time.perf_counter()
    msg = validation_message(decoder, "CreateGrant", params)
    elapsed = time.perf_counter() - started
    assert msg.startswith("10 validation errors detected: ")
    assert msg.count(ENUM_CLAUSE) == 10
    assert len(msg) < 5000
    assert elapsed < 0.5, elapsed  # was seconds, and a 100 MB message


def test_type_errors_past_the_tenth_violation_still_found(decoder: RequestDecoder) -> None:
    # The deserialiser runs before validation: a wrong type anywhere is a SerializationException, even past ten
    # constraint violations.
    assert_serialization(decoder, "CreateGrant", {
        "KeyId": KEY_ID, "GranteePrincipal": "p", "Operations": ["Nope"] * 20 + [5]})

