"""A custom key store drill, timed: an AWS CloudHSM key store on the cluster's default HSM cluster (a SoftHSM2
token), a key made in it, then the HSM side pulled down, slowed and made flaky, and the errors applications get in
between; disconnected and reconnected, and back to work.

    .venv/bin/python examples/keystore_demo.py        (or: make demo-keystore)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples._cluster import Timeline, attempt, demo_cluster
from trent.cluster.running import poll
from trent.node.hsm.softhsm import find_library
from trent.node.keystores.clusters import DEFAULT_CLUSTER_ID, DEFAULT_PASSWORD

REGION = "eu-west-1"


def state(kms: Any, store_id: str) -> str:
    entry = kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"][0]
    return str(entry["ConnectionState"])


def main() -> int:
    if find_library() is None:
        print("SoftHSM2 is not installed (Debian: apt-get install softhsm2): no HSM cluster to demonstrate.")
        return 1
    t = Timeline()
    with demo_cluster() as cluster:
        kms = cluster.client(REGION)
        status = json.loads(cluster.trent("status", "--json").stdout)
        default = next(c for c in status["hsm_clusters"] if c["id"] == DEFAULT_CLUSTER_ID)
        t.say(f"cluster up; HSM cluster {DEFAULT_CLUSTER_ID} (SoftHSM2), trust anchor "
              f"{default['trust_anchor_certificate']}")
        store_id = kms.create_custom_key_store(
            CustomKeyStoreName="payments", CloudHsmClusterId=DEFAULT_CLUSTER_ID, KeyStorePassword=DEFAULT_PASSWORD,
            TrustAnchorCertificate=Path(default["trust_anchor_certificate"]).read_text())["CustomKeyStoreId"]
        t.say(f"created custom key store {store_id}: {state(kms, store_id)}")
        kms.connect_custom_key_store(CustomKeyStoreId=store_id)
        poll(lambda: state(kms, store_id) == "CONNECTED")
        t.say(f"connected: {state(kms, store_id)}")
        meta = kms.create_key(CustomKeyStoreId=store_id, Origin="AWS_CLOUDHSM",
                              Description="card numbers")["KeyMetadata"]
        key_id = meta["KeyId"]
        t.say(f"created KMS key {key_id} in the store (Origin {meta['Origin']}, cluster {meta['CloudHsmClusterId']}):"
              " its AES-256 material was generated in the token, non-extractable")
        blob = kms.encrypt(KeyId=key_id, Plaintext=b"4111 1111 1111 1111")["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"4111 1111 1111 1111"
        t.say("encrypted and decrypted in the HSM")

        cluster.trent("fault", "hsm", DEFAULT_CLUSTER_ID, "down")
        t.say(f"HSM cluster {DEFAULT_CLUSTER_ID} is DOWN")
        t.say(attempt("Encrypt", kms.encrypt, KeyId=key_id, Plaintext=b"x"))
        t.say(attempt("Decrypt", kms.decrypt, CiphertextBlob=blob))
        t.say(attempt("CreateKey in the store", kms.create_key, CustomKeyStoreId=store_id, Origin="AWS_CLOUDHSM"))
        t.say(attempt("Encrypt with a KMS key", kms.encrypt, KeyId=kms.create_key()["KeyMetadata"]["KeyId"],
                      Plaintext=b"x"))
        cluster.trent("fault", "hsm", DEFAULT_CLUSTER_ID, "clear")
        cluster.trent("fault", "hsm", DEFAULT_CLUSTER_ID, "latency", "200ms")
        t.say("HSM cluster back, 200 ms slower per call")
        t.say(attempt("Decrypt", kms.decrypt, CiphertextBlob=blob))
        cluster.trent("fault", "hsm", DEFAULT_CLUSTER_ID, "clear")
        cluster.trent("fault", "hsm", DEFAULT_CLUSTER_ID, "errors", "50%")
        t.say("HSM cluster failing half of its calls")
        outcomes = [attempt("Decrypt", kms.decrypt, CiphertextBlob=blob).split(" -> ")[1].split(":")[0].split(" (")[0]
                    for _ in range(10)]
        t.say(f"10 decrypts: {outcomes.count('OK')} OK, {outcomes.count('KMSInternalException')} KMSInternalException")
        cluster.trent("fault", "hsm", DEFAULT_CLUSTER_ID, "clear")
        t.say("faults cleared")
        t.say(attempt("Decrypt", kms.decrypt, CiphertextBlob=blob))

        kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
        t.say(f"store disconnected: key state {kms.describe_key(KeyId=key_id)['KeyMetadata']['KeyState']}")
        t.say(attempt("Decrypt", kms.decrypt, CiphertextBlob=blob))
        t.say(attempt("DeleteCustomKeyStore", kms.delete_custom_key_store, CustomKeyStoreId=store_id))
        kms.connect_custom_key_store(CustomKeyStoreId=store_id)
        poll(lambda: state(kms, store_id) == "CONNECTED")
        t.say(f"reconnected: key state {kms.describe_key(KeyId=key_id)['KeyMetadata']['KeyState']}")
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"4111 1111 1111 1111"
        t.say("the ciphertext made before the outage decrypts again")
        print(cluster.trent("status").stdout)
        t.say("key store demo OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
