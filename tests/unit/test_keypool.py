"""The RSA key-pair pool: hands out fresh pairs, pre-generates only what was asked for, never the same pair twice."""

from __future__ import annotations

import threading
import time

from trent.node.crypto.handles import SecretBytes
from trent.node.crypto.keypool import KeyPair, KeyPairPool


class Counter:
    def __init__(self) -> None:
        self.n = 0
        self.lock = threading.Lock()

    def __call__(self, spec: str) -> KeyPair:
        with self.lock:
            self.n += 1
            n = self.n
        return SecretBytes(f"{spec}-{n}".encode().ljust(32, b"."), label="private-key"), f"pub-{n}".encode()


def test_unrequested_specs_are_never_generated() -> None:
    gen = Counter()
    pool = KeyPairPool(gen, depth=2)
    time.sleep(0.05)
    assert gen.n == 0  # no thread, no work, until someone asks
    pool.stop()


def test_pairs_are_fresh_and_refilled_in_the_background() -> None:
    gen = Counter()
    pool = KeyPairPool(gen, specs=("RSA_2048",), depth=2)
    first = pool.take("RSA_2048")  # generated on the spot: the pool was empty
    deadline = time.monotonic() + 5
    while gen.n < 3 and time.monotonic() < deadline:  # ... and now it fills to its depth
        time.sleep(0.01)
    assert gen.n == 3
    seen = {first[1]}
    for _ in range(4):
        seen.add(pool.take("RSA_2048")[1])
    assert len(seen) == 5  # never the same pair twice
    pool.stop()


def test_other_specs_bypass_the_pool() -> None:
    gen = Counter()
    pool = KeyPairPool(gen, specs=("RSA_4096",))
    pool.take("ECC_NIST_P256")
    assert gen.n == 1
    pool.stop()
