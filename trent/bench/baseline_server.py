"""The framework ceiling: a minimal aiohttp handler doing the work every signed Encrypt needs and nothing else —
SigV4 verification, JSON in and out, AES-256-GCM. Trent's figures are reported as ratios to it.

    python -m trent.bench.baseline_server --port 4700 [--processes 2]
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import socket

from aiohttp import web
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from trent.node.auth.principals import Principal, PrincipalDirectory
from trent.node.clock import AdjustableClock
from trent.node.wire.sigv4 import SigV4Verifier


def make_app() -> web.Application:
    verifier = SigV4Verifier(PrincipalDirectory([Principal("test", "test", "arn:aws:iam::111122223333:root",
                                                           "111122223333")]), AdjustableClock())
    aead = AESGCM(os.urandom(32))

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        verifier.verify(request.method, request.raw_path, request.query_string, request.headers, body)
        params = json.loads(body)
        nonce = os.urandom(12)
        blob = nonce + aead.encrypt(nonce, base64.b64decode(params["Plaintext"]), None)
        out = {"CiphertextBlob": base64.b64encode(blob).decode(), "KeyId": params["KeyId"],
               "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}
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
