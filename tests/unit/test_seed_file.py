"""Seed files parsed: Trent's format in TOML and YAML, local-kms's two layouts, and every refusal naming the key and
field without repeating key material."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from trent.cluster.seed_file import SeedError, load_seed, parse_seed

REGIONS = ("us-east-1", "eu-west-1")
KEY_ID = "0b7c9e2a-4d6f-4a1b-8c3e-5f7a9b1d3e5f"
MATERIAL = "8d2f6b0e4c1a3957b2e6d4f0a8c1e3b5d7f9a2c4e6b8d0f1a3c5e7b9d2f4a6c8"


def _pem(key: object) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,  # type: ignore[attr-defined]
                             serialization.NoEncryption()).decode()


def _parse(*keys: dict[str, object], aliases: list[dict[str, object]] | None = None):
    return parse_seed({"keys": list(keys), "aliases": aliases or []}, REGIONS, "seed.toml")


def test_defaults_of_a_minimal_key() -> None:
    key = _parse({"key_id": KEY_ID}).keys[0]
    assert (key.key_spec, key.key_usage, key.home.region, key.home.enabled) == (
        "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", "us-east-1", True)
    assert key.materials == () and not key.multi_region and not key.rotation_enabled


def test_material_forms_and_history() -> None:
    import base64

    b64 = base64.b64encode(bytes.fromhex(MATERIAL)).decode()
    key = _parse({"key_id": KEY_ID, "materials": [f"hex:{'11' * 32}", f"base64:{b64}"]}).keys[0]
    assert [m.reveal() for m in key.materials] == [bytes.fromhex("11" * 32), bytes.fromhex(MATERIAL)]
    assert MATERIAL not in repr(key) and b64 not in repr(key)


@pytest.mark.parametrize(("entry", "message"), [
    ({"key_id": "not-a-uuid"}, "key_id must be a lowercase UUID"),
    ({"key_id": KEY_ID, "material": f"hex:{MATERIAL[:-2]}"}, "material is 32 bytes (64 hex digits)"),
    ({"key_id": KEY_ID, "material": f"hex:{MATERIAL[:-1]}z"}, "material is not valid hex"),
    ({"key_id": KEY_ID, "material": "base64:!!!"}, "material is not valid base64"),
    ({"key_id": KEY_ID, "material": MATERIAL}, "hex:<hex digits> or base64:<base64>"),
    ({"key_id": KEY_ID, "key_spec": "HMAC_256", "material": f"hex:{MATERIAL}00"}, "HMAC_256 material is 32 bytes"),
    ({"key_id": KEY_ID, "region": "us-west-9"}, "region 'us-west-9' is not a region of this cluster"),
    ({"key_id": KEY_ID, "replicas": ["eu-west-1"]}, "only a multi-Region key (mrk-...) has replicas"),
    ({"key_id": KEY_ID, "key_spec": "RSA_2048", "key_usage": "GENERATE_VERIFY_MAC"}, "not valid for RSA_2048"),
    ({"key_id": KEY_ID, "key_spec": "RSA_2048", "key_usage": "SIGN_VERIFY", "rotation": {"enabled": True}},
     "only symmetric encryption keys rotate"),
    ({"key_id": KEY_ID, "rotation": {"enabled": True, "period_days": 30}}, "period_days must be a whole number"),
    ({"key_id": KEY_ID, "aliases": ["alias/aws/s3"]}, "alias/aws/ is reserved"),
    ({"key_id": KEY_ID, "policy": "{not json"}, "policy is not a valid key policy"),
    ({"key_id": KEY_ID, "origin": "EXTERNAL"}, "origin 'EXTERNAL' is not supported"),
    ({"key_id": KEY_ID, "description": "x" * 8193}, "description: at most 8192 characters"),
    ({"key_id": KEY_ID, "tags": {"aws:owner": "me"}}, "keys starting with aws: are reserved"),
    ({"key_id": KEY_ID, "private_key_pem": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"},
     "private_key_pem is not an unencrypted PEM private key"),
    ({"key_id": KEY_ID, "materal": "x"}, "unknown field 'materal'"),
    ({"key_id": "mrk-" + "a" * 32, "replicas": ["us-east-1"]}, "one key per region"),
])
def test_refusals_name_the_key_and_never_the_material(entry: dict[str, object], message: str) -> None:
    with pytest.raises(SeedError) as err:
        _parse(entry)
    assert message in str(err.value)
    assert MATERIAL[:-2] not in str(err.value)


def test_a_pem_key_gives_its_spec_and_must_match_a_declared_one() -> None:
    pem = _pem(ec.generate_private_key(ec.SECP384R1()))
    key = _parse({"key_id": KEY_ID, "key_usage": "SIGN_VERIFY", "private_key_pem": pem}).keys[0]
    assert key.key_spec == "ECC_NIST_P384"
    with pytest.raises(SeedError, match="is a ECC_NIST_P384 key, not ECC_NIST_P256"):
        _parse({"key_id": KEY_ID, "key_spec": "ECC_NIST_P256", "key_usage": "SIGN_VERIFY", "private_key_pem": pem})


def test_a_key_declared_twice_in_a_region_is_refused() -> None:
    with pytest.raises(SeedError, match="declared twice in us-east-1"):
        _parse({"key_id": KEY_ID}, {"key_id": KEY_ID})


def test_yaml_and_toml_read_the_same(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text(f'[[keys]]\nkey_id = "{KEY_ID}"\naliases = ["alias/a"]\n'
                                     'rotation = {{ next_rotation = 2030-01-02T03:04:05Z }}\n'.replace("{{", "{")
                                     .replace("}}", "}"))
    (tmp_path / "s.yaml").write_text(f"keys:\n  - key_id: {KEY_ID}\n    aliases: [alias/a]\n"
                                     "    rotation: {next_rotation: '2030-01-02T03:04:05Z'}\n")
    toml, yaml = load_seed(tmp_path / "s.toml", REGIONS), load_seed(tmp_path / "s.yaml", REGIONS)
    assert toml == yaml
    assert toml.keys[0].rotation_enabled
    assert toml.keys[0].next_rotation == dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC).timestamp()


def test_unreadable_files_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("keys: [\n")
    with pytest.raises(SeedError, match="is not valid YAML"):
        load_seed(tmp_path / "s.yaml", REGIONS)
    (tmp_path / "s.toml").write_text("keys = [\n")
    with pytest.raises(SeedError, match="is not valid TOML"):
        load_seed(tmp_path / "s.toml", REGIONS)
    with pytest.raises(SeedError, match="cannot read seed file"):
        load_seed(tmp_path / "absent.toml", REGIONS)
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(SeedError, match="expected a table"):
        load_seed(tmp_path / "list.yaml", REGIONS)


def test_a_yaml_bomb_or_a_self_referring_file_is_refused_quickly(tmp_path: Path) -> None:
    # Nine levels of nine aliases: a few hundred bytes that stand for 387 million strings.
    levels = ['      l0: &l0 ["x","x","x","x","x","x","x","x","x"]']
    levels += [f"      l{n}: &l{n} [{','.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 9)]
    (tmp_path / "bomb.yaml").write_text(f"keys:\n  - key_id: {KEY_ID}\n    policy:\n" + "\n".join(levels) + "\n")
    with pytest.raises(SeedError, match="expands to more than"):
        load_seed(tmp_path / "bomb.yaml", REGIONS)
    (tmp_path / "loop.yaml").write_text(f"keys:\n  - key_id: {KEY_ID}\n    policy: &p {{Statement: *p}}\n")
    with pytest.raises(SeedError, match="expands to more than"):
        load_seed(tmp_path / "loop.yaml", REGIONS)


@pytest.mark.parametrize("body", [
    "    tags: {1: a}\n",  # YAML keys need not be strings
    "    policy: {Version: 2012-10-17, Statement: []}\n",  # an unquoted date is a date in YAML
])
def test_yaml_values_of_other_types_are_refused_as_seed_errors(tmp_path: Path, body: str) -> None:
    (tmp_path / "s.yaml").write_text(f"keys:\n  - key_id: {KEY_ID}\n" + body)
    with pytest.raises(SeedError, match=KEY_ID):
        load_seed(tmp_path / "s.yaml", REGIONS)


def test_a_toml_policy_table_with_a_bare_date_is_a_seed_error(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text(f'[[keys]]\nkey_id = "{KEY_ID}"\n'
                                     "policy = { Version = 2012-10-17, Statement = [] }\n")
    with pytest.raises(SeedError, match="quote dates"):
        load_seed(tmp_path / "s.toml", REGIONS)


def test_local_kms_version_2(tmp_path: Path) -> None:
    pem = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    indented = "\n".join("        " + line for line in pem.strip().splitlines())
    (tmp_path / "seed.yaml").write_text(f"""\
Version: 2
Keys:
  - KeyId: {KEY_ID}
    Metadata: {{Description: sym, KeySpec: SYMMETRIC_DEFAULT}}
    NextKeyRotation: 2031-05-06T00:00:00Z
    Material:
      BackingKeys: [{MATERIAL}]
  - KeyId: 49c5492b-b1bc-42a8-9a5c-b2015e810c1c
    Metadata: {{KeySpec: RSA_2048, KeyUsage: ENCRYPT_DECRYPT}}
    Material:
      PrivateKeyPem: |
{indented}
Aliases:
  - AliasName: dev
    TargetKeyId: {KEY_ID}
""")
    seed = load_seed(tmp_path / "seed.yaml", REGIONS)
    sym, rsa_key = seed.keys
    assert sym.home.description == "sym" and sym.rotation_enabled and len(sym.materials) == 1
    assert (rsa_key.key_spec, rsa_key.key_usage) == ("RSA_2048", "ENCRYPT_DECRYPT")
    assert seed.aliases[0].name == "alias/dev" and seed.aliases[0].key_id == KEY_ID


def test_local_kms_classic_external_origin_is_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "seed.yaml").write_text(f"""\
Keys:
  Symmetric:
    Aes:
      - Metadata: {{KeyId: {KEY_ID}, Origin: EXTERNAL}}
""")
    with pytest.raises(SeedError, match="origin 'EXTERNAL' is not supported"):
        load_seed(tmp_path / "seed.yaml", REGIONS)
