"""An external key store drill, timed: `trent xks-proxy` over HTTPS (a local CA the cluster trusts through
xks_trusted_ca) as the external key manager, an external key store on it, a KMS key bound to an external key, AWS's
double encryption; then the proxy slowed beyond KMS's 250 ms, made to fail, to send garbage and taken down, and
the errors applications get in between; back to work.

    .venv/bin/python examples/xks_demo.py        (or: make demo-xks)
"""

from __future__ import annotations

import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from examples._cluster import Timeline, attempt
from trent.cluster.ports import free_port_block
from trent.cluster.running import RunningCluster, poll
from trent.cluster.xks_running import ACCESS_KEY, SECRET, RunningProxy
from trent.node.config import DEFAULT_REGIONS
from trent.node.hsm.softhsm import find_library
from trent.node.xks.devcerts import make_dev_certs

REGION = "us-east-1"
# Its lines: narrower, and the proxy's longer messages cut.
shown = partial(attempt, width=26, message_limit=110)


def retrying(call: Any, **kwargs: Any) -> Any:
    """A happy-path call, repeated (bounded) if a busy machine made the proxy miss KMS's 250 ms: as an application
    retries, which is what the message of that error asks."""
    for tried in range(10):
        try:
            return call(**kwargs)
        except ClientError as exc:
            if tried == 9 or "in time" not in exc.response["Error"].get("Message", ""):
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def connect(kms: Any, store_id: str) -> str:
    for _ in range(5):
        kms.connect_custom_key_store(CustomKeyStoreId=store_id)
        state: str = poll(lambda: (s := kms.describe_custom_key_stores(CustomKeyStoreId=store_id)[
            "CustomKeyStores"][0]["ConnectionState"]) != "CONNECTING" and s, timeout=20)
        if state == "CONNECTED":
            return state
        kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)  # FAILED (timed out on a busy machine): again
    return state


def main() -> int:
    if find_library() is None:
        print("SoftHSM2 is not installed (Debian: softhsm2; `make demo-xks` installs it as root)", file=sys.stderr)
        return 1
    t = Timeline()
    with tempfile.TemporaryDirectory(prefix="trent-xks-demo-") as tmp:
        root = Path(tmp)
        certs = make_dev_certs(root / "certs")
        proxy = RunningProxy(root / "proxy", tls=(certs.server_cert, certs.server_key), ca=certs.ca).start()
        (root / "trent.toml").write_text(f'xks_trusted_ca = "{certs.ca}"\n')  # the AWS timeout: 250 ms
        cluster = RunningCluster(root / "data", free_port_block(len(DEFAULT_REGIONS) + 1),
                                 extra_args=("--config", str(root / "trent.toml")), verbose=False)
        try:
            cluster.start()
            t.say(f"XKS proxy {proxy.endpoint}{proxy.uri_path} (keys in a SoftHSM2 token); cluster up")
            kms = boto3.client("kms", endpoint_url=cluster.gateway_url, region_name=REGION, aws_access_key_id="test",
                               aws_secret_access_key="test", config=Config(retries={"total_max_attempts": 1}))
            store_id = retrying(kms.create_custom_key_store,
                CustomKeyStoreName="demo-xks", CustomKeyStoreType="EXTERNAL_KEY_STORE",
                XksProxyUriEndpoint=proxy.endpoint, XksProxyUriPath=proxy.uri_path,
                XksProxyConnectivity="PUBLIC_ENDPOINT",
                XksProxyAuthenticationCredential={"AccessKeyId": ACCESS_KEY, "RawSecretAccessKey": SECRET},
            )["CustomKeyStoreId"]
            state = connect(kms, store_id)
            t.say(f"external key store {store_id}: {state}")
            key = retrying(kms.create_key, Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=store_id, XksKeyId="foo",
                           Description="bound to external key foo")["KeyMetadata"]
            t.say(f"KMS key {key['KeyId']} on external key {key['XksKeyConfiguration']['Id']}")
            data_key = retrying(kms.generate_data_key, KeyId=key["KeyId"], KeySpec="AES_256",
                                EncryptionContext={"app": "demo"})
            opened = retrying(kms.decrypt, CiphertextBlob=data_key["CiphertextBlob"], EncryptionContext={"app": "demo"})
            assert opened["Plaintext"] == data_key["Plaintext"]
            t.say(f"data key sealed twice (Trent's key material, then external key foo in the proxy's token): "
                  f"{len(data_key['CiphertextBlob'])} bytes; it opens again")
            blob = data_key["CiphertextBlob"]
            for words, what in ((("latency", "400ms"), "proxy 400 ms slow"), (("errors", "100%"), "proxy failing"),
                                (("garbage",), "proxy sends garbage"), (("reject",), "proxy rejects KMS"),
                                (("down",), "proxy down")):
                proxy.fault(*words)
                time.sleep(0.3)
                t.say(f"{what}:")
                t.say("  " + shown("Decrypt", kms.decrypt, CiphertextBlob=blob, EncryptionContext={"app": "demo"}))
                t.say("  " + shown("GenerateDataKey", kms.generate_data_key, KeyId=key["KeyId"], NumberOfBytes=32))
                proxy.fault("clear")
            poll(lambda: shown("Decrypt", kms.decrypt, CiphertextBlob=blob,
                                 EncryptionContext={"app": "demo"}).split("-> ")[1].startswith("OK"), timeout=10)
            t.say("proxy back: the data key decrypts again")
            status = cluster.trent("status").stdout
            t.say("trent status: " + next(line.strip() for line in status.splitlines() if "external key store" in line))
            print("XKS demo OK")
            return 0
        finally:
            if cluster.proc is not None:
                cluster.stop()
            proxy.stop()


if __name__ == "__main__":
    sys.exit(main())
