"""Custom key stores (AWS_CLOUDHSM) end to end: boto3 against a private cluster whose HSM clusters are real SoftHSM2
tokens under its data directory. The whole lifecycle, the exceptions AWS defines, keys whose material never leaves
the token (read back through PKCS#11), disconnected stores, deletion, restarts, faults, status and audit."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.e2e.harness import RunningCluster, free_port_block
from trent.cluster.running import poll
from trent.node.hsm.softhsm import SoftHsmDirectory, find_library

pytestmark = pytest.mark.skipif(find_library() is None, reason="SoftHSM2 is not installed (Debian: softhsm2)")

PRIMARY, RESTORED, OTHER, SINGLE = ("cluster-primaryabcde", "cluster-restoredabcd", "cluster-otherlineage",
                                    "cluster-singlehsmabc")
SPARE, VANISHING = "cluster-spareclusterab", "cluster-vanishingabc"  # changed or removed by a restart
PASSWORD = "kmsuser-pass-1"
CONFIG = f"""
[[principals]]
access_key = "test"
secret_key = "test"
arn = "arn:aws:iam::111122223333:root"
[[principals]]
access_key = "AKIAHSMAPP"
secret_key = "app-secret"
arn = "arn:aws:iam::111122223333:role/app"
policy = '''{{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow",
  "Action": ["kms:Encrypt", "kms:DescribeCustomKeyStores"], "Resource": "*"}}]}}'''
[[hsm_clusters]]
id = "{PRIMARY}"
kmsuser_password = "{PASSWORD}"
[[hsm_clusters]]
id = "{RESTORED}"
kmsuser_password = "{PASSWORD}"
backup_of = "{PRIMARY}"
[[hsm_clusters]]
id = "{OTHER}"
kmsuser_password = "other-pass-22"
[[hsm_clusters]]
id = "{SINGLE}"
kmsuser_password = "single-pass-3"
hsms = 1
[[hsm_clusters]]
id = "{SPARE}"
kmsuser_password = "spare-pass-4"
"""
VANISHING_CLUSTER = f"""
[[hsm_clusters]]
id = "{VANISHING}"
kmsuser_password = "vanishing-pass-5"
"""


@pytest.fixture(scope="module")
def hsm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    root = tmp_path_factory.mktemp("hsm")
    (root / "trent.toml").write_text(CONFIG + VANISHING_CLUSTER)
    c = RunningCluster(root / "data", free_port_block(4), extra_args=("--config", str(root / "trent.toml"))).start()
    yield c
    if c.proc is not None:
        c.stop()


def client(c: RunningCluster, region: str = "us-east-1", retries: int = 1, access_key: str = "test",
           secret: str = "test") -> Any:
    return boto3.client("kms", endpoint_url=c.gateway_url, region_name=region, aws_access_key_id=access_key,
                        aws_secret_access_key=secret, config=Config(retries={"total_max_attempts": retries,
                                                                               "mode": "standard"}))


def anchor(c: RunningCluster, cluster_id: str) -> str:
    lineage = PRIMARY if cluster_id == RESTORED else cluster_id
    return (c.data_dir / "hsm" / lineage / "customerCA.crt").read_text()


def error_of(call: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    err = info.value.response["Error"]
    return err["Code"], err.get("Message", "")


def describe(kms: Any, store_id: str) -> dict[str, Any]:
    entry: dict[str, Any] = kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"][0]
    return entry


def connected(kms: Any, store_id: str) -> dict[str, Any]:
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    return poll(lambda: (e := describe(kms, store_id))["ConnectionState"] in ("CONNECTED", "FAILED") and e)


def create_store(kms: Any, c: RunningCluster, name: str, cluster_id: str = PRIMARY,
                 password: str = PASSWORD) -> str:
    store_id: str = kms.create_custom_key_store(CustomKeyStoreName=name, CloudHsmClusterId=cluster_id,
                                                TrustAnchorCertificate=anchor(c, cluster_id),
                                                KeyStorePassword=password)["CustomKeyStoreId"]
    return store_id


def token_attributes(c: RunningCluster, region: str, object_hex: str | None) -> dict[str, Any] | None:
    """Read a key's token object through PKCS#11 (a separate instance of SoftHSM2 over the region's token files)."""
    import pkcs11
    from pkcs11 import Attribute, ObjectClass

    library = find_library()
    assert library is not None
    tokens = SoftHsmDirectory(c.data_dir / region / "hsm", library)
    token = tokens.library().lib.get_token(token_label=PRIMARY)
    with token.open(user_pin=PASSWORD) as session:
        found = list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}))
        for key in found:
            if object_hex is not None and bytes(key[Attribute.ID]).hex() == object_hex:
                out = {name: key[attr] for name, attr in (
                    ("sensitive", Attribute.SENSITIVE), ("extractable", Attribute.EXTRACTABLE),
                    ("never_extractable", Attribute.NEVER_EXTRACTABLE), ("local", Attribute.LOCAL),
                    ("token", Attribute.TOKEN), ("value_len", Attribute.VALUE_LEN), ("label", Attribute.LABEL))}
                try:
                    key[Attribute.VALUE]
                    out["value_readable"] = True
                except pkcs11.PKCS11Error:
                    out["value_readable"] = False
                return out
    return None


def test_lifecycle_and_crypto_in_the_token(hsm_cluster: RunningCluster) -> None:
    c = hsm_cluster
    kms = client(c)
    store_id = create_store(kms, c, "payments-hsm")
    assert store_id.startswith("cks-")
    entry = describe(kms, store_id)
    assert entry["ConnectionState"] == "DISCONNECTED" and entry["CloudHsmClusterId"] == PRIMARY
    assert entry["CustomKeyStoreType"] == "AWS_CLOUDHSM" and "ConnectionErrorCode" not in entry
    assert entry["TrustAnchorCertificate"] == anchor(c, PRIMARY)
    # Keys need a connected store.
    assert error_of(kms.create_key, CustomKeyStoreId=store_id, Origin="AWS_CLOUDHSM")[0] == \
        "CustomKeyStoreInvalidStateException"
    assert connected(kms, store_id)["ConnectionState"] == "CONNECTED"

    meta = kms.create_key(CustomKeyStoreId=store_id, Origin="AWS_CLOUDHSM", Description="in the HSM")["KeyMetadata"]
    assert meta["Origin"] == "AWS_CLOUDHSM" and meta["CustomKeyStoreId"] == store_id
    assert meta["CloudHsmClusterId"] == PRIMARY and meta["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert meta["KeyState"] == "Enabled" and meta["MultiRegion"] is False
    key_id = meta["KeyId"]
    # The material was generated in the token: sensitive, never extractable, its value unreadable.
    attrs = token_attributes(c, "us-east-1", meta["CurrentKeyMaterialId"])
    assert attrs is not None, "no token object for the key"
    assert attrs["sensitive"] is True and attrs["extractable"] is False and attrs["never_extractable"] is True
    assert attrs["local"] is True and attrs["token"] is True and attrs["value_len"] == 32
    assert attrs["value_readable"] is False

    context = {"tenant": "acme"}
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"card 4111", EncryptionContext=context)["CiphertextBlob"]
    assert blob[1] & 0x02  # Trent's format, flagged as a key store's ciphertext
    out = kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)
    assert out["Plaintext"] == b"card 4111" and out["KeyId"].endswith(key_id)
    assert error_of(kms.decrypt, CiphertextBlob=blob, EncryptionContext={"tenant": "other"})[0] == \
        "InvalidCiphertextException"
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    assert error_of(kms.decrypt, CiphertextBlob=tampered, EncryptionContext=context)[0] == \
        "InvalidCiphertextException"
    data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")
    assert len(data_key["Plaintext"]) == 32
    assert kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"])["Plaintext"] == data_key["Plaintext"]
    no_plain = kms.generate_data_key_without_plaintext(KeyId=key_id, NumberOfBytes=64)
    assert "Plaintext" not in no_plain
    assert len(kms.decrypt(CiphertextBlob=no_plain["CiphertextBlob"])["Plaintext"]) == 64
    # ReEncrypt both ways between the store's key and a key of KMS's own, and from the store's key to itself.
    plain_key = kms.create_key()["KeyMetadata"]["KeyId"]
    moved = kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext=context, DestinationKeyId=plain_key)
    assert kms.decrypt(CiphertextBlob=moved["CiphertextBlob"])["Plaintext"] == b"card 4111"
    back = kms.re_encrypt(CiphertextBlob=moved["CiphertextBlob"], DestinationKeyId=key_id)
    assert back["KeyId"].endswith(key_id) and kms.decrypt(CiphertextBlob=back["CiphertextBlob"])["Plaintext"] == \
        b"card 4111"
    again = kms.re_encrypt(CiphertextBlob=back["CiphertextBlob"], DestinationKeyId=key_id)
    assert kms.decrypt(CiphertextBlob=again["CiphertextBlob"])["Plaintext"] == b"card 4111"
    random = kms.generate_random(NumberOfBytes=48, CustomKeyStoreId=store_id)["Plaintext"]
    assert len(random) == 48 and random != kms.generate_random(NumberOfBytes=48, CustomKeyStoreId=store_id)[
        "Plaintext"]

    # Disconnected: keys are Unavailable, crypto fails as AWS's does; reconnecting restores them.
    kms.disable_key(KeyId=plain_key)  # unrelated key: untouched by the store's state
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    assert describe(kms, store_id)["ConnectionState"] == "DISCONNECTED"
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Unavailable"
    assert error_of(kms.encrypt, KeyId=key_id, Plaintext=b"x")[0] == "KMSInvalidStateException"
    assert error_of(kms.decrypt, CiphertextBlob=blob, EncryptionContext=context)[0] == "KMSInvalidStateException"
    assert error_of(kms.generate_random, NumberOfBytes=8, CustomKeyStoreId=store_id)[0] == \
        "CustomKeyStoreInvalidStateException"
    assert error_of(kms.disconnect_custom_key_store, CustomKeyStoreId=store_id)[0] == \
        "CustomKeyStoreInvalidStateException"
    assert error_of(kms.delete_custom_key_store, CustomKeyStoreId=store_id)[0] == "CustomKeyStoreHasCMKsException"
    # Disabling an unavailable key takes effect when its store is back (AWS's troubleshooting guide).
    kms.disable_key(KeyId=key_id)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Unavailable"
    assert connected(kms, store_id)["ConnectionState"] == "CONNECTED"
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Disabled"
    kms.enable_key(KeyId=key_id)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"] == b"card 4111"

    # Only what AWS allows in a custom key store.
    for kwargs in ({"KeySpec": "RSA_2048", "KeyUsage": "ENCRYPT_DECRYPT"}, {"MultiRegion": True},
                   {"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}):
        assert error_of(kms.create_key, CustomKeyStoreId=store_id, Origin="AWS_CLOUDHSM", **kwargs)[0] == \
            "UnsupportedOperationException"
    assert error_of(kms.enable_key_rotation, KeyId=key_id)[0] == "UnsupportedOperationException"
    assert error_of(kms.rotate_key_on_demand, KeyId=key_id)[0] == "UnsupportedOperationException"
    assert error_of(kms.generate_data_key_pair, KeyId=key_id, KeyPairSpec="ECC_NIST_P256")[0] == \
        "UnsupportedOperationException"
    assert error_of(kms.create_key, Origin="AWS_CLOUDHSM")[0] == "ValidationException"
    assert error_of(kms.create_key, CustomKeyStoreId="cks-0000000000000000a", Origin="AWS_CLOUDHSM")[0] == \
        "CustomKeyStoreNotFoundException"
    assert error_of(kms.generate_random, NumberOfBytes=8, CustomKeyStoreId="cks-0000000000000000a")[0] == \
        "CustomKeyStoreNotFoundException"

    # Deletion: the token object goes when the waiting period ends; then the store can be deleted.
    object_hex = meta["CurrentKeyMaterialId"]
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    c.trent("clock", "advance", "8d")
    poll(lambda: error_of(kms.describe_key, KeyId=key_id)[0] == "NotFoundException")
    poll(lambda: token_attributes(c, "us-east-1", object_hex) is None)
    assert error_of(kms.delete_custom_key_store, CustomKeyStoreId=store_id)[0] == \
        "CustomKeyStoreInvalidStateException"  # still connected
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    kms.delete_custom_key_store(CustomKeyStoreId=store_id)
    assert error_of(kms.describe_custom_key_stores, CustomKeyStoreId=store_id)[0] == \
        "CustomKeyStoreNotFoundException"


def test_every_key_store_exception(hsm_cluster: RunningCluster) -> None:
    c = hsm_cluster
    kms = client(c, "eu-west-1")
    assert error_of(kms.create_custom_key_store, CustomKeyStoreName="x", CloudHsmClusterId="cluster-nosuchcluster",
                    TrustAnchorCertificate=anchor(c, PRIMARY), KeyStorePassword=PASSWORD)[0] == \
        "CloudHsmClusterNotFoundException"
    assert error_of(kms.create_custom_key_store, CustomKeyStoreName="x", CloudHsmClusterId=PRIMARY,
                    TrustAnchorCertificate=anchor(c, OTHER), KeyStorePassword=PASSWORD)[0] == \
        "IncorrectTrustAnchorException"
    assert error_of(kms.create_custom_key_store, CustomKeyStoreName="x", CloudHsmClusterId=PRIMARY,
                    TrustAnchorCertificate="not a certificate", KeyStorePassword=PASSWORD)[0] == \
        "IncorrectTrustAnchorException"
    assert error_of(kms.create_custom_key_store, CustomKeyStoreName="x", CloudHsmClusterId=SINGLE,
                    TrustAnchorCertificate=anchor(c, SINGLE), KeyStorePassword="single-pass-3")[0] == \
        "CloudHsmClusterInvalidConfigurationException"
    assert error_of(kms.create_custom_key_store, CustomKeyStoreName="x", CloudHsmClusterId=PRIMARY)[0] == \
        "ValidationException"
    assert error_of(kms.create_custom_key_store, CustomKeyStoreName="x", CustomKeyStoreType="EXTERNAL_KEY_STORE",
                    XksProxyUriEndpoint="https://xks.example.com", XksProxyUriPath="/kms/xks/v1",
                    XksProxyConnectivity="PUBLIC_ENDPOINT",
                    XksProxyAuthenticationCredential={"AccessKeyId": "A" * 20, "RawSecretAccessKey": "s" * 43})[0] \
        == "XksProxyUriUnreachableException"  # an external key store's proxy must answer its health check
    wrong = create_store(kms, c, "wrong-password", PRIMARY, password="not-the-password")
    assert error_of(kms.create_custom_key_store, CustomKeyStoreName="wrong-password", CloudHsmClusterId=OTHER,
                    TrustAnchorCertificate=anchor(c, OTHER), KeyStorePassword="other-pass-22")[0] == \
        "CustomKeyStoreNameInUseException"
    for cluster_id in (PRIMARY, RESTORED):  # the cluster itself, or one sharing its backup history
        assert error_of(kms.create_custom_key_store, CustomKeyStoreName="y", CloudHsmClusterId=cluster_id,
                        TrustAnchorCertificate=anchor(c, cluster_id), KeyStorePassword=PASSWORD)[0] == \
            "CloudHsmClusterInUseException"
    failed = connected(kms, wrong)
    assert failed["ConnectionState"] == "FAILED" and failed["ConnectionErrorCode"] == "INVALID_CREDENTIALS"
    assert error_of(kms.connect_custom_key_store, CustomKeyStoreId=wrong)[0] == "CustomKeyStoreInvalidStateException"
    assert error_of(kms.update_custom_key_store, CustomKeyStoreId=wrong, KeyStorePassword=PASSWORD)[0] == \
        "CustomKeyStoreInvalidStateException"
    kms.disconnect_custom_key_store(CustomKeyStoreId=wrong)
    assert "ConnectionErrorCode" not in describe(kms, wrong)
    assert error_of(kms.update_custom_key_store, CustomKeyStoreId=wrong, CloudHsmClusterId=OTHER)[0] == \
        "CloudHsmClusterNotRelatedException"
    assert error_of(kms.update_custom_key_store, CustomKeyStoreId=wrong, CloudHsmClusterId="cluster-nosuchcluster")[
        0] == "CloudHsmClusterNotFoundException"
    kms.update_custom_key_store(CustomKeyStoreId=wrong, KeyStorePassword=PASSWORD, CloudHsmClusterId=RESTORED,
                                NewCustomKeyStoreName="restored")
    entry = connected(kms, wrong)
    assert entry["ConnectionState"] == "CONNECTED" and entry["CloudHsmClusterId"] == RESTORED
    assert entry["CustomKeyStoreName"] == "restored"
    kms.update_custom_key_store(CustomKeyStoreId=wrong, NewCustomKeyStoreName="renamed while connected")
    assert error_of(kms.update_custom_key_store, CustomKeyStoreId=wrong, KeyStorePassword=PASSWORD)[0] == \
        "CustomKeyStoreInvalidStateException"
    assert error_of(kms.delete_custom_key_store, CustomKeyStoreId=wrong)[0] == "CustomKeyStoreInvalidStateException"
    for call in (kms.connect_custom_key_store, kms.disconnect_custom_key_store, kms.delete_custom_key_store,
                 kms.update_custom_key_store):
        assert error_of(call, CustomKeyStoreId="cks-1234567890abcdef0")[0] == "CustomKeyStoreNotFoundException"
    assert error_of(kms.describe_custom_key_stores, CustomKeyStoreName="nope")[0] == \
        "CustomKeyStoreNotFoundException"
    # Paging, and the other region's stores are its own.
    other = create_store(kms, c, "other lineage", OTHER, "other-pass-22")
    first = kms.describe_custom_key_stores(Limit=1)
    assert first["Truncated"] is True and len(first["CustomKeyStores"]) == 1
    rest = kms.describe_custom_key_stores(Marker=first["NextMarker"])
    assert {e["CustomKeyStoreId"] for e in first["CustomKeyStores"] + rest["CustomKeyStores"]} == {wrong, other}
    assert all(e["CustomKeyStoreId"] not in (wrong, other) for e in
               client(c, "ap-northeast-2").describe_custom_key_stores()["CustomKeyStores"])


def test_faults_restart_status_and_audit(hsm_cluster: RunningCluster) -> None:
    c = hsm_cluster
    kms = client(c, "ap-northeast-2")
    store_id = create_store(kms, c, "drill", PRIMARY)
    assert connected(kms, store_id)["ConnectionState"] == "CONNECTED"
    key_id = kms.create_key(CustomKeyStoreId=store_id, Origin="AWS_CLOUDHSM")["KeyMetadata"]["KeyId"]
    plain_key = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"drill")["CiphertextBlob"]

    c.trent("fault", "hsm", PRIMARY, "down")
    assert error_of(kms.encrypt, KeyId=key_id, Plaintext=b"x")[0] == "KeyUnavailableException"
    assert error_of(kms.decrypt, CiphertextBlob=blob)[0] == "KeyUnavailableException"
    assert error_of(kms.create_key, CustomKeyStoreId=store_id, Origin="AWS_CLOUDHSM")[0] == \
        "CloudHsmClusterInvalidConfigurationException"
    kms.encrypt(KeyId=plain_key, Plaintext=b"other keys work")
    c.trent("fault", "clear")  # every fault, the HSM clusters' too
    assert json.loads(c.trent("status", "--json").stdout)["hsm_faults"] == {}
    c.trent("fault", "hsm", PRIMARY, "errors", "100%")
    assert "HSM faults" in c.trent("status").stdout
    assert error_of(kms.encrypt, KeyId=key_id, Plaintext=b"x")[0] == "KMSInternalException"
    c.trent("fault", "hsm", PRIMARY, "clear")
    c.trent("fault", "hsm", PRIMARY, "latency", "200ms")
    started = time.monotonic()
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"drill"
    assert time.monotonic() - started >= 0.2
    # A token slower than the request's timeout fails the request; the event loop (and other keys) go on meanwhile.
    c.trent("fault", "hsm", PRIMARY, "latency", "4s")
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(1) as side:
        hung = side.submit(error_of, client(c, "ap-northeast-2").encrypt, KeyId=key_id, Plaintext=b"x")
        time.sleep(0.3)
        quick = time.monotonic()
        kms.encrypt(KeyId=plain_key, Plaintext=b"the loop is free")  # while the HSM call hangs
        assert time.monotonic() - quick < 1.0 and not hung.done()
        assert hung.result(10)[0] == "DependencyTimeoutException"
    assert time.monotonic() - started < 4.0
    c.trent("fault", "hsm", PRIMARY, "clear")
    bad = c.trent("fault", "hsm", "cluster-nosuchcluster", "down", check=False)
    assert bad.returncode != 0 and "unknown HSM cluster" in bad.stderr

    status = json.loads(c.trent("status", "--json").stdout)
    stores = status["regions"]["ap-northeast-2"]["key_stores"]
    mine = next(s for s in stores if s["id"] == store_id)
    assert {k: mine[k] for k in ("name", "cluster", "state", "error", "keys")} == {
        "name": "drill", "cluster": PRIMARY, "state": "CONNECTED", "error": None, "keys": 1}
    assert mine["pkcs11_calls"] >= 3 and mine["pkcs11_seconds"] > 0
    text = c.trent("status").stdout
    assert store_id in text and "CONNECTED" in text and PRIMARY in text

    # Connecting while the cluster is down fails with NETWORK_ERRORS; once it is back, the store connects.
    other = create_store(kms, c, "other", OTHER, "other-pass-22")
    c.trent("fault", "hsm", OTHER, "down")
    failed = connected(kms, other)
    assert (failed["ConnectionState"], failed["ConnectionErrorCode"]) == ("FAILED", "NETWORK_ERRORS")
    c.trent("fault", "hsm", OTHER, "clear")
    kms.disconnect_custom_key_store(CustomKeyStoreId=other)
    assert connected(kms, other)["ConnectionState"] == "CONNECTED"

    # The configuration changes under two stores: one cluster loses its HSMs, the other is gone.
    spare = create_store(kms, c, "spare", SPARE, "spare-pass-4")
    vanishing = create_store(kms, c, "vanishing", VANISHING, "vanishing-pass-5")
    c.stop()
    (c.data_dir.parent / "trent.toml").write_text(CONFIG.replace('id = "cluster-spareclusterab"',
                                                                 'id = "cluster-spareclusterab"\nhsms = 0'))
    c.start()
    kms = client(c, "ap-northeast-2")
    assert describe(kms, store_id)["ConnectionState"] == "CONNECTED"  # kept across the restart
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"drill"
    for ident, code in ((spare, "INSUFFICIENT_CLOUDHSM_HSMS"), (vanishing, "CLUSTER_NOT_FOUND")):
        failed = connected(kms, ident)
        assert (failed["ConnectionState"], failed.get("ConnectionErrorCode")) == ("FAILED", code)

    # Audit: the key store calls are recorded, the password never is (nor in the data directory in clear).
    def audited() -> list[dict[str, Any]]:
        events = c.trent("audit", "--region", "ap-northeast-2", "--json").stdout.splitlines()
        return [json.loads(line) for line in events]
    poll(lambda: any(e.get("eventName") == "CreateCustomKeyStore" for e in audited()))
    assert {"CreateCustomKeyStore", "ConnectCustomKeyStore", "Encrypt"} <= {e.get("eventName") for e in audited()}
    for path in [*Path(c.data_dir).rglob("*"), c.log_path]:
        if path.is_file() and path.suffix != ".so":
            for secret in (PASSWORD, "other-pass-22", "spare-pass-4", "vanishing-pass-5"):
                assert secret.encode() not in path.read_bytes(), path


def _cli(c: RunningCluster, *args: str) -> Any:
    done = c.aws("us-east-1", "kms", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def test_aws_cli_lifecycle(hsm_cluster: RunningCluster, tmp_path: Path) -> None:
    c = hsm_cluster
    cert = tmp_path / "customerCA.crt"
    cert.write_text(anchor(c, OTHER))
    store_id = _cli(c, "create-custom-key-store", "--custom-key-store-name", "cli store", "--cloud-hsm-cluster-id",
                    OTHER, "--trust-anchor-certificate", f"file://{cert}", "--key-store-password",
                    "other-pass-22")["CustomKeyStoreId"]
    _cli(c, "connect-custom-key-store", "--custom-key-store-id", store_id)
    poll(lambda: _cli(c, "describe-custom-key-stores", "--custom-key-store-name", "cli store")[
        "CustomKeyStores"][0]["ConnectionState"] == "CONNECTED")
    meta = _cli(c, "create-key", "--origin", "AWS_CLOUDHSM", "--custom-key-store-id", store_id)["KeyMetadata"]
    assert meta["Origin"] == "AWS_CLOUDHSM" and meta["CloudHsmClusterId"] == OTHER
    source = tmp_path / "plain.bin"
    source.write_bytes(b"\x00\x01 from the cli")
    blob = _cli(c, "encrypt", "--key-id", meta["KeyId"], "--plaintext", f"fileb://{source}")["CiphertextBlob"]
    (tmp_path / "blob.bin").write_bytes(base64.b64decode(blob))
    plain = _cli(c, "decrypt", "--ciphertext-blob", f"fileb://{tmp_path / 'blob.bin'}")["Plaintext"]
    assert base64.b64decode(plain) == b"\x00\x01 from the cli"
    random = _cli(c, "generate-random", "--number-of-bytes", "16", "--custom-key-store-id", store_id)
    assert len(base64.b64decode(random["Plaintext"])) == 16
    _cli(c, "disconnect-custom-key-store", "--custom-key-store-id", store_id)
    refused = c.aws("us-east-1", "kms", "delete-custom-key-store", "--custom-key-store-id", store_id)
    assert refused.returncode != 0 and "CustomKeyStoreHasCMKsException" in refused.stderr
    state = c.aws("us-east-1", "kms", "encrypt", "--key-id", meta["KeyId"], "--plaintext", f"fileb://{source}")
    assert state.returncode != 0 and "KMSInvalidStateException" in state.stderr


def test_a_default_cluster_needs_no_configuration(cluster: RunningCluster) -> None:
    """`trent up` with no config: the default cluster (named with its password in the banner) works at once."""
    kms = client(cluster, "ap-northeast-2")
    status = json.loads(cluster.trent("status", "--json").stdout)
    default = next(h for h in status["hsm_clusters"] if h["id"] == "cluster-trentdefault")
    certificate = Path(default["trust_anchor_certificate"]).read_text()
    assert "kmsuser password trent-kmsuser" in cluster.log_path.read_text()
    store_id = kms.create_custom_key_store(CustomKeyStoreName=f"default-{time.time()}",
                                           CloudHsmClusterId="cluster-trentdefault",
                                           TrustAnchorCertificate=certificate,
                                           KeyStorePassword="trent-kmsuser")["CustomKeyStoreId"]
    try:
        assert connected(kms, store_id)["ConnectionState"] == "CONNECTED"
        assert len(kms.generate_random(NumberOfBytes=32, CustomKeyStoreId=store_id)["Plaintext"]) == 32
        kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    finally:
        kms.delete_custom_key_store(CustomKeyStoreId=store_id)


def test_policies_and_grants_cover_key_stores(hsm_cluster: RunningCluster) -> None:
    c = hsm_cluster
    kms = client(c, "eu-west-1")
    app = client(c, "eu-west-1", access_key="AKIAHSMAPP", secret="app-secret")
    # The key store operations are authorized by IAM policy alone.
    assert error_of(app.create_custom_key_store, CustomKeyStoreName="app's", CloudHsmClusterId=PRIMARY,
                    TrustAnchorCertificate=anchor(c, PRIMARY), KeyStorePassword=PASSWORD)[0] == \
        "AccessDeniedException"
    assert isinstance(app.describe_custom_key_stores()["CustomKeyStores"], list)
    store = next(e for e in kms.describe_custom_key_stores()["CustomKeyStores"] if e["CloudHsmClusterId"] == OTHER)
    if store["ConnectionState"] != "CONNECTED":
        assert connected(kms, store["CustomKeyStoreId"])["ConnectionState"] == "CONNECTED"
    key_id = kms.create_key(CustomKeyStoreId=store["CustomKeyStoreId"], Origin="AWS_CLOUDHSM")["KeyMetadata"]["KeyId"]
    blob = app.encrypt(KeyId=key_id, Plaintext=b"for the app")["CiphertextBlob"]  # IAM policy + key policy
    assert error_of(app.decrypt, CiphertextBlob=blob)[0] == "AccessDeniedException"
    grant = kms.create_grant(KeyId=key_id, GranteePrincipal="arn:aws:iam::111122223333:role/app",
                             Operations=["Decrypt"])
    assert app.decrypt(CiphertextBlob=blob, GrantTokens=[grant["GrantToken"]])["Plaintext"] == b"for the app"
    kms.revoke_grant(KeyId=key_id, GrantId=grant["GrantId"])
    assert error_of(app.decrypt, CiphertextBlob=blob)[0] == "AccessDeniedException"
