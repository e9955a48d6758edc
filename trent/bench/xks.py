"""The external key store section of the suite: Encrypt with a key in an external key store whose proxy is
`trent xks-proxy` on this machine (keys in SoftHSM2), 32 connections, keep-alive, beside Encrypt with a standard key,
measured alternately; and the proxy's own throughput (its encrypt call, SigV4-signed, 32 connections). The cluster
reaches the proxy over plain HTTP here (xks_allow_http): the load generator speaks HTTP only, and TLS on a kept-alive
connection costs little beside the token call. Targets: ≥ 0.35× the standard key, p99 ≤ 40 ms."""

from __future__ import annotations

import base64
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trent.bench.loadgen import Call, Target
from trent.bench.procs import TrentCluster
from trent.cluster.running import poll
from trent.cluster.xks_running import ACCESS_KEY, SECRET, RunningProxy
from trent.node.hsm.softhsm import find_library
from trent.node.xks.signing import sign


def proxy_encrypt_call(proxy: RunningProxy, message: bytes) -> Call:
    """A signed encrypt request to the proxy, raw (valid for the five minutes a signature lasts)."""
    path = proxy.uri_path + "/keys/foo/encrypt"
    body = json.dumps({"requestMetadata": {"awsPrincipalArn": "arn:aws:iam::111122223333:root",
                                           "kmsKeyArn": "arn:aws:kms:us-east-1:111122223333:key/bench",
                                           "kmsOperation": "Encrypt", "kmsRequestId": "bench"},
                       "plaintext": base64.b64encode(message).decode(), "encryptionAlgorithm": "AES_GCM"}).encode()
    host = f"127.0.0.1:{proxy.port}"
    headers = sign("POST", path, host, body, ACCESS_KEY, SECRET, "us-east-1", time.time())
    lines = [f"POST {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()),
             "Content-Type: application/json", f"Content-Length: {len(body)}", "Connection: keep-alive"]
    return Call("XksEncrypt", body, ("\r\n".join(lines) + "\r\n\r\n").encode() + body)


def xks(settings: Any, progress: Any, measured: Callable[..., dict[str, Any]]) -> dict[str, Any] | None:
    if find_library() is None:
        progress.step("XKS", "skipped (SoftHSM2 is not installed)")
        return None
    root = Path(tempfile.mkdtemp(prefix="trent-bench-xks-"))
    proxy = RunningProxy(root / "proxy").start()
    config = root / "trent.toml"
    config.write_text("xks_allow_http = true\n")
    cluster: TrentCluster | None = None
    try:
        cluster = TrentCluster(extra=("--config", str(config)))
        kms = cluster.client(settings.region)
        store_id = kms.create_custom_key_store(
            CustomKeyStoreName="bench", CustomKeyStoreType="EXTERNAL_KEY_STORE", XksProxyUriEndpoint=proxy.endpoint,
            XksProxyUriPath=proxy.uri_path, XksProxyConnectivity="PUBLIC_ENDPOINT",
            XksProxyAuthenticationCredential={"AccessKeyId": ACCESS_KEY, "RawSecretAccessKey": SECRET},
        )["CustomKeyStoreId"]
        kms.connect_custom_key_store(CustomKeyStoreId=store_id)
        poll(lambda: kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"][0][
            "ConnectionState"] == "CONNECTED", timeout=20)
        xks_key = kms.create_key(Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=store_id,
                                 XksKeyId="foo")["KeyMetadata"]["KeyId"]
        standard_key = kms.create_key(Description="bench standard")["KeyMetadata"]["KeyId"]
        message = base64.b64encode(b"m" * 64).decode()
        standard_call = Call("Encrypt", json.dumps({"KeyId": standard_key, "Plaintext": message}).encode())
        xks_call = Call("Encrypt", json.dumps({"KeyId": xks_key, "Plaintext": message}).encode())
        gateway = Target(cluster.host, cluster.port, settings.region)
        pairs = []
        for i in range(settings.rounds):
            pair = {"standard": measured(cluster, gateway, [standard_call], settings, 32),
                    "xks": measured(cluster, gateway, [xks_call], settings, 32)}
            pairs.append(pair)
            progress.step(f"XKS Encrypt x32 vs standard, round {i + 1}",
                          f"{pair['xks']['req_per_s']} vs {pair['standard']['req_per_s']} req/s")
        own = measured(proxy_server(proxy), Target("127.0.0.1", proxy.port, "us-east-1"),
                       [proxy_encrypt_call(proxy, b"m" * 64)], settings, 32)
        progress.step("XKS proxy encrypt x32", f"{own['req_per_s']} req/s")
        ratio = statistics.median(p["xks"]["req_per_s"] / p["standard"]["req_per_s"] for p in pairs)
        return {"pairs": pairs, "proxy": own, "xks_vs_standard": round(ratio, 3),
                "xks_p99_ms": statistics.median(p["xks"]["p99_ms"] for p in pairs),
                "xks_p99_ms_worst": max(p["xks"]["p99_ms"] for p in pairs),
                "xks_errors": sum(p["xks"]["errors"] for p in pairs)}
    finally:
        if cluster is not None:
            cluster.stop()
        proxy.stop()
        shutil.rmtree(root, ignore_errors=True)


class proxy_server:
    def __init__(self, proxy: RunningProxy) -> None:
        self.pid = proxy.proc.pid if proxy.proc is not None else None
