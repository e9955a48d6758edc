"""External key stores end to end: boto3 and the AWS CLI against a cluster whose external key store's proxy is a
real `trent xks-proxy` over HTTPS (a local CA the cluster trusts through xks_trusted_ca). The lifecycle, every
exception AWS defines for the settings and the keys, AWS's double encryption, and a proxy that is down, slow, sends
garbage, fails, or rejects the credential, as applications see each."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.e2e.harness import RunningCluster, free_port_block
from tests.e2e.xks_fixtures import https_proxy
from trent.cluster.running import poll
from trent.cluster.xks_running import ACCESS_KEY, SECRET, RunningProxy
from trent.node.hsm.softhsm import find_library
from trent.node.xks.devcerts import DevCerts, make_dev_certs

pytestmark = pytest.mark.skipif(find_library() is None, reason="SoftHSM2 is not installed (Debian: softhsm2)")

OTHER_SECRET = "b3RoZXItc2VjcmV0LWFjY2Vzcy1rZXktb2YtNDMtb3ItbW9yZQ"
UNREACHABLE = "AWS KMS cannot communicate with the external key store proxy"
NOT_CONNECTED = "not connected to its external key store proxy"


class Env:
    def __init__(self, root: Path, certs: DevCerts, proxy: RunningProxy, cluster: RunningCluster) -> None:
        self.root, self.certs, self.proxy, self.cluster = root, certs, proxy, cluster
        self.kms = client(cluster)

    def create_store(self, name: str, **overrides: Any) -> str:
        params: dict[str, Any] = {
            "CustomKeyStoreName": name, "CustomKeyStoreType": "EXTERNAL_KEY_STORE",
            "XksProxyUriEndpoint": self.proxy.endpoint, "XksProxyUriPath": self.proxy.uri_path,
            "XksProxyConnectivity": "PUBLIC_ENDPOINT",
            "XksProxyAuthenticationCredential": {"AccessKeyId": ACCESS_KEY, "RawSecretAccessKey": SECRET}}
        params.update(overrides)
        return str(self.kms.create_custom_key_store(**params)["CustomKeyStoreId"])

    def store(self, store_id: str) -> dict[str, Any]:
        stores: list[dict[str, Any]] = self.kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"]
        return stores[0]

    def settle(self, store_id: str) -> dict[str, Any]:
        return poll(lambda: (s := self.store(store_id))["ConnectionState"] != "CONNECTING" and s, timeout=20)

    def connect(self, store_id: str) -> dict[str, Any]:
        self.kms.connect_custom_key_store(CustomKeyStoreId=store_id)
        return self.settle(store_id)

    def disconnect(self, store_id: str) -> None:
        self.kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)


def client(c: RunningCluster) -> Any:
    return boto3.client("kms", endpoint_url=c.gateway_url, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test", config=Config(retries={"total_max_attempts": 1}))


def error_of(call: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return info.value.response["Error"]["Code"], info.value.response["Error"]["Message"]


def decrypted(kms: Any, blob: bytes) -> bytes | None:
    try:
        return bytes(kms.decrypt(CiphertextBlob=blob)["Plaintext"])
    except ClientError:
        return None


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("xks")
    certs = make_dev_certs(root / "certs")
    proxy = https_proxy(root, certs).start()
    # 1 s rather than AWS's 250 ms: two shared cores under a whole test suite are slower than AWS's network.
    (root / "trent.toml").write_text(f'xks_trusted_ca = "{certs.ca}"\nxks_timeout_ms = 1000\n')
    cluster = RunningCluster(root / "data", free_port_block(4),
                             extra_args=("--config", str(root / "trent.toml"))).start()
    yield Env(root, certs, proxy, cluster)
    cluster.stop()
    proxy.stop()


@pytest.fixture(scope="module")
def connected(env: Env) -> tuple[str, str]:
    """A connected store and its key on external key foo."""
    store_id = env.create_store("main")
    assert env.connect(store_id)["ConnectionState"] == "CONNECTED"
    key = env.kms.create_key(Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=store_id, XksKeyId="foo")["KeyMetadata"]
    return store_id, key["KeyId"]


def test_a_store_is_described_as_aws_describes_it(env: Env, connected: tuple[str, str]) -> None:
    store = env.store(connected[0])
    assert store["CustomKeyStoreType"] == "EXTERNAL_KEY_STORE" and store["ConnectionState"] == "CONNECTED"
    assert store["XksProxyConfiguration"] == {"Connectivity": "PUBLIC_ENDPOINT", "AccessKeyId": ACCESS_KEY,
                                              "UriEndpoint": env.proxy.endpoint, "UriPath": env.proxy.uri_path}
    assert "CloudHsmClusterId" not in store and SECRET not in json.dumps(store, default=str)
    assert "KmsHealthCheck" in env.proxy.log() or "ConnectCustomKeyStore" in env.proxy.log()
    # The trail is written in the background: polled (bounded) until the call is in it.
    audit = poll(lambda: (out := env.cluster.trent("audit", "--event", "CreateCustomKeyStore", "--json").stdout)
                 and out, timeout=15)
    assert "CreateCustomKeyStore" in audit and SECRET not in audit
    assert SECRET not in env.cluster.log_path.read_text(errors="replace")


def test_keys_show_their_external_key(env: Env, connected: tuple[str, str]) -> None:
    meta = env.kms.describe_key(KeyId=connected[1])["KeyMetadata"]
    assert meta["Origin"] == "EXTERNAL_KEY_STORE" and meta["CustomKeyStoreId"] == connected[0]
    assert meta["XksKeyConfiguration"] == {"Id": "foo"} and "CloudHsmClusterId" not in meta
    for call, kwargs in ((env.kms.enable_key_rotation, {}), (env.kms.rotate_key_on_demand, {}),
                         (env.kms.generate_data_key_pair, {"KeyPairSpec": "ECC_NIST_P256"})):
        assert error_of(call, KeyId=connected[1], **kwargs)[0] == "UnsupportedOperationException"


def test_double_encryption_round_trips(env: Env, connected: tuple[str, str]) -> None:
    kms, key = env.kms, connected[1]
    context = {"purpose": "test"}
    blob = kms.encrypt(KeyId=key, Plaintext=b"secret data", EncryptionContext=context)["CiphertextBlob"]
    assert b"secret data" not in blob
    answer = kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)
    assert answer["Plaintext"] == b"secret data" and answer["KeyId"].endswith(key)
    code, message = error_of(kms.decrypt, CiphertextBlob=blob, EncryptionContext={"purpose": "other"})
    assert code == "KMSInvalidStateException" and "ciphertext or encryption context" in message
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    assert error_of(kms.decrypt, CiphertextBlob=bytes(tampered), EncryptionContext=context)[0] in (
        "KMSInvalidStateException", "InvalidCiphertextException")
    data_key = kms.generate_data_key(KeyId=key, KeySpec="AES_256")
    assert kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"])["Plaintext"] == data_key["Plaintext"]
    sealed = kms.generate_data_key_without_plaintext(KeyId=key, NumberOfBytes=64)["CiphertextBlob"]
    assert len(kms.decrypt(CiphertextBlob=sealed)["Plaintext"]) == 64
    big = bytes(range(256)) * 16
    assert kms.decrypt(CiphertextBlob=kms.encrypt(KeyId=key, Plaintext=big)["CiphertextBlob"])["Plaintext"] == big


def test_reencrypt_between_an_external_key_and_a_standard_one(env: Env, connected: tuple[str, str]) -> None:
    kms, xks_key = env.kms, connected[1]
    standard = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=standard, Plaintext=b"move me")["CiphertextBlob"]
    moved = kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=xks_key)
    assert moved["KeyId"].endswith(xks_key)
    back = kms.re_encrypt(CiphertextBlob=moved["CiphertextBlob"], DestinationKeyId=standard)
    assert kms.decrypt(CiphertextBlob=back["CiphertextBlob"])["Plaintext"] == b"move me"
    log = env.proxy.log()
    assert "kmsOperation=ReEncrypt" in log and "principal=arn:aws:iam::" in log


def test_the_proxy_sees_request_metadata_as_aws_sends_it(env: Env, connected: tuple[str, str]) -> None:
    kms = env.kms
    kms.encrypt(KeyId=connected[1], Plaintext=b"x")
    request_id = kms.generate_data_key(KeyId=connected[1], NumberOfBytes=16)["ResponseMetadata"]["RequestId"]
    line = poll(lambda: next((x for x in env.proxy.log().splitlines() if request_id in x), None), timeout=5)
    assert "Encrypt key=foo status=200" in line and "kmsOperation=GenerateDataKey" in line
    assert "principal=arn:aws:iam::" in line


def test_settings_are_checked_as_aws_checks_them(env: Env, connected: tuple[str, str]) -> None:
    kms = env.kms
    code, message = error_of(env.create_store, name="vpc", XksProxyConnectivity="VPC_ENDPOINT_SERVICE",
                             XksProxyVpcEndpointServiceName="com.amazonaws.vpce.us-east-1.vpce-svc-0123456789")
    assert code == "UnsupportedOperationException" and "VPC_ENDPOINT_SERVICE" in message
    assert error_of(env.create_store, name="plain", XksProxyUriEndpoint=env.proxy.endpoint.replace("https", "http")
                    )[0] == "ValidationException"  # plain HTTP needs xks_allow_http
    for path in ("/kms/xks/v9x", "/a b/kms/xks/v1", "/prefix/only/here"):
        assert error_of(env.create_store, name="p", XksProxyUriPath=path)[0] == "ValidationException"
    for cred in ({"AccessKeyId": "lowercase-is-not-allowed", "RawSecretAccessKey": SECRET},
                 {"AccessKeyId": ACCESS_KEY, "RawSecretAccessKey": "!" * 44}):
        assert error_of(env.create_store, name="c", XksProxyAuthenticationCredential=cred)[0] == "ValidationException"
    assert error_of(env.create_store, name="h", KeyStorePassword="kmsuser-pass")[0] == "ValidationException"
    assert error_of(kms.create_custom_key_store, CustomKeyStoreName="m", CustomKeyStoreType="EXTERNAL_KEY_STORE",
                    XksProxyUriEndpoint=env.proxy.endpoint)[0] == "ValidationException"
    assert error_of(env.create_store, name="again")[0] == "XksProxyUriInUseException"
    assert error_of(env.create_store, name="main", XksProxyUriPath="/other/kms/xks/v1")[0] == \
        "CustomKeyStoreNameInUseException"


def test_the_create_health_check_maps_proxy_failures(env: Env) -> None:
    code, message = error_of(env.create_store, name="badsecret", XksProxyUriPath="/x1/kms/xks/v1")
    assert code == "XksProxyInvalidConfigurationException" and "invalid URI path" in message
    code, message = error_of(env.create_store, name="wrongcred", XksProxyAuthenticationCredential={
        "AccessKeyId": ACCESS_KEY, "RawSecretAccessKey": OTHER_SECRET}, XksProxyUriPath="/kms/xks/v1")
    assert code in ("XksProxyIncorrectAuthenticationCredentialException", "XksProxyInvalidConfigurationException")
    closed = free_port_block(1)
    code, message = error_of(env.create_store, name="nobody", XksProxyUriEndpoint=f"https://localhost:{closed}")
    assert code == "XksProxyUriUnreachableException" and UNREACHABLE in message
    # A proxy whose certificate chains to a CA the cluster does not trust.
    stranger = https_proxy(env.root / "stranger").start()
    try:
        code, message = error_of(env.create_store, name="untrusted", XksProxyUriEndpoint=stranger.endpoint)
        assert code == "XksProxyUriUnreachableException" and "TLS" in message
    finally:
        stranger.stop()
    assert not [s for s in env.kms.describe_custom_key_stores()["CustomKeyStores"]
                if s["CustomKeyStoreName"] in ("badsecret", "wrongcred", "nobody", "untrusted")]


def test_wrong_credentials_are_the_proxys_to_reject(env: Env) -> None:
    other = https_proxy(env.root / "creds", env.certs)
    other.credentials = ((ACCESS_KEY, OTHER_SECRET),)
    other.start()
    try:
        code, message = error_of(env.create_store, name="wrongsecret", XksProxyUriEndpoint=other.endpoint)
        assert code == "XksProxyIncorrectAuthenticationCredentialException" and "could not authenticate" in message
        store_id = env.create_store("rotated", XksProxyUriEndpoint=other.endpoint, XksProxyAuthenticationCredential={
            "AccessKeyId": ACCESS_KEY, "RawSecretAccessKey": OTHER_SECRET})
        env.kms.update_custom_key_store(CustomKeyStoreId=store_id, NewCustomKeyStoreName="rotated2")
        assert env.connect(store_id)["ConnectionState"] == "CONNECTED"
        code, _ = error_of(env.kms.update_custom_key_store, CustomKeyStoreId=store_id,
                           XksProxyAuthenticationCredential={"AccessKeyId": ACCESS_KEY, "RawSecretAccessKey": SECRET})
        assert code == "XksProxyIncorrectAuthenticationCredentialException"
        code, _ = error_of(env.kms.update_custom_key_store, CustomKeyStoreId=store_id,
                           XksProxyUriEndpoint="https://localhost:1")
        assert code == "CustomKeyStoreInvalidStateException"  # the endpoint changes only while disconnected
        other.fault("reject")
        env.disconnect(store_id)
        failed = env.connect(store_id)
        assert (failed["ConnectionState"], failed["ConnectionErrorCode"]) == ("FAILED", "INVALID_CREDENTIALS")
        env.disconnect(store_id)
        other.fault("clear")
        env.kms.delete_custom_key_store(CustomKeyStoreId=store_id)
    finally:
        other.stop()


def test_create_key_checks_the_external_key(env: Env, connected: tuple[str, str]) -> None:
    kms, store_id = env.kms, connected[0]

    def create(**kwargs: Any) -> tuple[str, str]:
        return error_of(kms.create_key, **{"Origin": "EXTERNAL_KEY_STORE", "CustomKeyStoreId": store_id, **kwargs})
    assert create(XksKeyId="nonexistent")[0] == "XksKeyNotFoundException"
    for external in ("encrypt_only_key", "decrypt_only_key", "impotent_key", "disabled_key"):
        assert create(XksKeyId=external)[0] == "XksKeyInvalidConfigurationException", external
    code, message = create(XksKeyId="foo")
    assert code == "XksKeyAlreadyInUseException" and connected[1] in message
    assert create()[0] == "ValidationException"  # no XksKeyId
    assert error_of(kms.create_key, XksKeyId="foo")[0] == "ValidationException"  # not Origin EXTERNAL_KEY_STORE
    assert create(XksKeyId="second", KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")[0] == \
        "UnsupportedOperationException"
    assert create(XksKeyId="bad id!")[0] == "ValidationException"
    assert error_of(kms.create_key, Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId="cks-0000000000000000a",
                    XksKeyId="second")[0] == "CustomKeyStoreNotFoundException"
    assert error_of(kms.generate_random, NumberOfBytes=8, CustomKeyStoreId=store_id)[0] == \
        "UnsupportedOperationException"


def test_a_disconnected_store_makes_its_keys_unavailable(env: Env) -> None:
    kms = env.kms
    store_id = env.create_store("cycle", XksProxyUriPath=env.proxy.uri_path,
                                XksProxyUriEndpoint=env.proxy.endpoint.replace("localhost", "127.0.0.1"))
    assert env.store(store_id)["ConnectionState"] == "DISCONNECTED"
    assert error_of(kms.create_key, Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=store_id, XksKeyId="second")[0] \
        == "CustomKeyStoreInvalidStateException"
    connected = env.connect(store_id)
    # The server certificate names 127.0.0.1 too: the connection is verified either way.
    assert connected["ConnectionState"] == "CONNECTED", connected
    key = kms.create_key(Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=store_id, XksKeyId="second")["KeyMetadata"]
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"kept")["CiphertextBlob"]
    env.disconnect(store_id)
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Unavailable"
    assert error_of(kms.decrypt, CiphertextBlob=blob)[0] == "KMSInvalidStateException"
    assert error_of(kms.delete_custom_key_store, CustomKeyStoreId=store_id)[0] == "CustomKeyStoreHasCMKsException"
    env.connect(store_id)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"kept"
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled"


def test_proxy_failures_as_applications_see_them(env: Env, connected: tuple[str, str]) -> None:
    kms, key, proxy = env.kms, connected[1], env.proxy
    blob = kms.encrypt(KeyId=key, Plaintext=b"before")["CiphertextBlob"]
    try:
        proxy.fault("latency", "1500ms")  # beyond the cluster's timeout (1 s here; AWS: 250 ms)
        code, message = error_of(kms.encrypt, KeyId=key, Plaintext=b"x")
        assert code == "KMSInvalidStateException" and "did not respond in time" in message
        proxy.fault("clear")
        proxy.fault("garbage")
        code, message = error_of(kms.decrypt, CiphertextBlob=blob)
        assert code == "KMSInvalidStateException" and "cannot interpret the response" in message
        proxy.fault("clear")
        proxy.fault("errors", "100%")
        code, message = error_of(kms.generate_data_key, KeyId=key, NumberOfBytes=32)
        assert code == "KMSInvalidStateException" and "cannot communicate with the external key manager" in message
        proxy.fault("clear")
        proxy.fault("reject")
        code, message = error_of(kms.encrypt, KeyId=key, Plaintext=b"x")
        assert code == "KMSInvalidStateException" and "could not authenticate AWS KMS" in message
        proxy.fault("clear")
        proxy.fault("down")
        poll(lambda: error_of(kms.encrypt, KeyId=key, Plaintext=b"x")[1].startswith(UNREACHABLE), timeout=10)
        status = json.loads(env.cluster.trent("status", "--json").stdout)
        stores = [s for s in status["regions"]["us-east-1"]["key_stores"] if s["id"] == connected[0]]
        assert stores[0]["proxy"] == proxy.endpoint + proxy.uri_path and stores[0]["health"]["ok"] is False
        assert "external key store" in env.cluster.trent("status").stdout
    finally:
        proxy.fault("clear")
    poll(lambda: decrypted(kms, blob) == b"before", timeout=10)
    status = json.loads(env.cluster.trent("status", "--json").stdout)
    stores = [s for s in status["regions"]["us-east-1"]["key_stores"] if s["id"] == connected[0]]
    assert stores[0]["health"]["ok"] is True


def test_connecting_to_a_proxy_that_is_down_fails_with_the_xks_code(env: Env) -> None:
    other = https_proxy(env.root / "down", env.certs).start()
    try:
        store_id = env.create_store("downstore", XksProxyUriEndpoint=other.endpoint)
        other.fault("down")
        failed = env.connect(store_id)
        assert (failed["ConnectionState"], failed["ConnectionErrorCode"]) == ("FAILED", "XKS_PROXY_NOT_REACHABLE")
        assert error_of(env.kms.update_custom_key_store, CustomKeyStoreId=store_id,
                        NewCustomKeyStoreName="renamed")[0] == "CustomKeyStoreInvalidStateException"
        assert error_of(env.kms.connect_custom_key_store, CustomKeyStoreId=store_id)[0] == \
            "CustomKeyStoreInvalidStateException"  # FAILED: disconnect first, as AWS asks
        env.disconnect(store_id)
        other.fault("clear")
        other.fault("latency", "1500ms")
        failed = env.connect(store_id)
        assert (failed["ConnectionState"], failed["ConnectionErrorCode"]) == ("FAILED", "XKS_PROXY_TIMED_OUT")
        env.disconnect(store_id)
        other.fault("clear")
        other.fault("garbage")
        failed = env.connect(store_id)
        assert failed["ConnectionErrorCode"] == "XKS_PROXY_INVALID_RESPONSE"
        env.disconnect(store_id)
        env.kms.delete_custom_key_store(CustomKeyStoreId=store_id)
        assert error_of(env.store, store_id=store_id)[0] == "CustomKeyStoreNotFoundException"
    finally:
        other.stop()


def test_the_aws_cli(env: Env, connected: tuple[str, str]) -> None:
    other = https_proxy(env.root / "cli", env.certs).start()
    try:
        # AWS CLI v1 fetches any parameter that starts with https:// (cli_follow_urlparam): the endpoint goes
        # in --cli-input-json instead.
        request = {"CustomKeyStoreName": "cli", "CustomKeyStoreType": "EXTERNAL_KEY_STORE",
                   "XksProxyUriEndpoint": other.endpoint, "XksProxyUriPath": other.uri_path,
                   "XksProxyConnectivity": "PUBLIC_ENDPOINT",
                   "XksProxyAuthenticationCredential": {"AccessKeyId": ACCESS_KEY, "RawSecretAccessKey": SECRET}}
        made = env.cluster.aws("us-east-1", "kms", "create-custom-key-store", "--cli-input-json", json.dumps(request))
        assert made.returncode == 0, made.stderr
        store_id = json.loads(made.stdout)["CustomKeyStoreId"]
        env.cluster.aws("us-east-1", "kms", "connect-custom-key-store", "--custom-key-store-id", store_id, check=True)
        env.settle(store_id)
        key = json.loads(env.cluster.aws("us-east-1", "kms", "create-key", "--origin", "EXTERNAL_KEY_STORE",
                                         "--custom-key-store-id", store_id, "--xks-key-id", "third",
                                         check=True).stdout)["KeyMetadata"]
        assert key["XksKeyConfiguration"] == {"Id": "third"}
        out = json.loads(env.cluster.aws("us-east-1", "kms", "encrypt", "--key-id", key["KeyId"], "--plaintext",
                                         "hello", check=True).stdout)
        blob = env.root / "cli.blob"
        blob.write_bytes(base64.b64decode(out["CiphertextBlob"]))
        back = json.loads(env.cluster.aws("us-east-1", "kms", "decrypt", "--ciphertext-blob", f"fileb://{blob}",
                                          check=True).stdout)
        assert base64.b64decode(back["Plaintext"]) == b"hello"
        refused = env.cluster.aws("us-east-1", "kms", "create-key", "--origin", "EXTERNAL_KEY_STORE",
                                  "--custom-key-store-id", store_id, "--xks-key-id", "nonexistent")
        assert refused.returncode != 0 and "XksKeyNotFoundException" in refused.stderr
    finally:
        other.stop()


def test_stores_and_keys_survive_a_restart(env: Env, connected: tuple[str, str]) -> None:
    """Last in the module: it restarts the cluster. A store's settings (its secret only wrapped) and its keys are
    region state; the restarted cluster calls the proxy on new connections."""
    blob = env.kms.encrypt(KeyId=connected[1], Plaintext=b"durable")["CiphertextBlob"]
    env.cluster.restart()
    kms = client(env.cluster)
    store = kms.describe_custom_key_stores(CustomKeyStoreId=connected[0])["CustomKeyStores"][0]
    assert store["ConnectionState"] == "CONNECTED" and store["XksProxyConfiguration"]["AccessKeyId"] == ACCESS_KEY
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"durable"
    for path in env.cluster.data_dir.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert SECRET.encode() not in path.read_bytes(), path
