"""The framework ceiling: a minimal aiohttp handler doing the work every signed Encrypt needs and nothing else —
SigV4 verification, JSON in and out, AES-256-GCM. Trent's figures are reported as ratios to it.

For the operations whose cryptography costs more than AES-GCM, the same handler does theirs instead (chosen by
X-Amz-Target): Sign (ECDSA P-256 over SHA-256 of the message), Verify (of a digest; the answer says whether the
signature holds), GenerateMac and VerifyMac (HMAC-SHA-256). Every other target is answered as Encrypt. An
operation's latency is compared with the ceiling doing the same cryptography (bench/flat.py).

    python -m trent.bench.baseline_server --port 4700 [--processes 2]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import multiprocessing
import os
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from trent.node.auth.principals import Principal, PrincipalDirectory
from trent.node.clock import AdjustableClock
from trent.node.wire.sigv4 import SigV4Verifier


def make_app() -> web.Application:
    verifier = SigV4Verifier(PrincipalDirectory([Principal("test", "test", "arn:aws:iam::111122223333:root",
                                                           "111122223333")]), AdjustableClock())
    aead = AESGCM(os.urandom(32))
    signing = ec.generate_private_key(ec.SECP256R1())
    mac_key = os.urandom(32)

    def encrypt(params: dict[str, Any]) -> dict[str, Any]:
        nonce = os.urandom(12)
        blob = nonce + aead.encrypt(nonce, base64.b64decode(params["Plaintext"]), None)
        return {"CiphertextBlob": base64.b64encode(blob).decode(), "KeyId": params["KeyId"],
                "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}

    def sign(params: dict[str, Any]) -> dict[str, Any]:
        signature = signing.sign(base64.b64decode(params["Message"]), ec.ECDSA(hashes.SHA256()))
        return {"KeyId": params["KeyId"], "Signature": base64.b64encode(signature).decode(),
                "SigningAlgorithm": "ECDSA_SHA_256"}

    def verify(params: dict[str, Any]) -> dict[str, Any]:
        try:
            signing.public_key().verify(base64.b64decode(params["Signature"]), base64.b64decode(params["Message"]),
                                        ec.ECDSA(Prehashed(hashes.SHA256())))
            valid = True
        except InvalidSignature:
            valid = False
        return {"KeyId": params["KeyId"], "SignatureValid": valid, "SigningAlgorithm": "ECDSA_SHA_256"}

    def generate_mac(params: dict[str, Any]) -> dict[str, Any]:
        mac = hmac.digest(mac_key, base64.b64decode(params["Message"]), hashlib.sha256)
        return {"KeyId": params["KeyId"], "Mac": base64.b64encode(mac).decode(), "MacAlgorithm": "HMAC_SHA_256"}

    def verify_mac(params: dict[str, Any]) -> dict[str, Any]:
        mac = hmac.digest(mac_key, base64.b64decode(params["Message"]), hashlib.sha256)
        return {"KeyId": params["KeyId"], "MacValid": hmac.compare_digest(mac, base64.b64decode(params["Mac"])),
                "MacAlgorithm": "HMAC_SHA_256"}

    work: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        "TrentService.Sign": sign, "TrentService.Verify": verify, "TrentService.GenerateMac": generate_mac,
        "TrentService.VerifyMac": verify_mac}

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        verifier.verify(request.method, request.raw_path, request.query_string, request.headers, body)
        out = work.get(request.headers.get("X-Amz-Target", ""), encrypt)(json.loads(body))
        return web.Response(body=json.dumps(out).encode(), content_type="application/x-amz-json-1.1")

    app = web.Application()
    app.router.add_post("/", handle)
    return app


def _serve(port: int) -> None:
    # SO_REUSEPORT: several processes accept on one port, the kernel spreading connections between them.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    web.run_app(make_app(), sock=sock, access_log=None, print=None, handle_signals=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    children = [multiprocessing.Process(target=_serve, args=(args.port,)) for _ in range(args.processes - 1)]
    for child in children:
        child.start()
    try:
        _serve(args.port)
    finally:
        for child in children:
            child.terminate()


if __name__ == "__main__":
    main()
