"""Encryption at rest: what sealing and opening one stored value costs (webconnect/encryption.py).

    .venv/bin/python bench/encryption.py

The hot paths that seal: each co-editing batch commit (one Yjs update, tens of bytes
to a few KiB), each channel publish with history (one frame, ~100-300 bytes); that
open: a room load, a history read. End-to-end effects: bench/coedit.py and
bench/realtime.py with and without ENCRYPTION_KEYS (bench/README.md).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webconnect import encryption


def per_call(function: object, argument: object, rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        function(argument)  # type: ignore[operator]
    return (time.perf_counter() - start) / rounds * 1e6


def main() -> None:
    ring = encryption.parse_key_ring("k1:" + encryption.generate_key())
    print(f"python {sys.version.split()[0]}, load {os.getloadavg()[0]:.1f}\n")
    print("| value | bytes | seal µs | open µs |")
    print("| --- | ---: | ---: | ---: |")
    for label, size in (("Yjs update (a keystroke)", 30), ("channel frame", 250), ("Yjs update (a paste)", 4096)):
        data = os.urandom(size)
        sealed = encryption.encrypt(data, ring)
        seal = per_call(lambda d: encryption.encrypt(d, ring), data, 20000)
        unseal = per_call(lambda d: encryption.decrypt(d, ring), sealed, 20000)
        print(f"| {label}, binary | {size} | {seal:.1f} | {unseal:.1f} |")
        text = "x" * size
        sealed_text = encryption.encrypt_text(text, ring)
        seal = per_call(lambda t: encryption.encrypt_text(t, ring), text, 20000)
        unseal = per_call(lambda t: encryption.decrypt_text(t, ring), sealed_text, 20000)
        print(f"| {label}, text (Redis) | {size} | {seal:.1f} | {unseal:.1f} |")
    print(f"\nload at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
