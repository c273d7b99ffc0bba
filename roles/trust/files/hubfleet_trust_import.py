#!/usr/bin/env python3
"""Fold an image's own CA bundle into the system store: each certificate the store lacks becomes
BUNDLE's image-<sha256>.crt in the local folder (one per file, as update-ca-certificates wants).

Usage: hubfleet_trust_import.py BUNDLE STORE LOCAL_DIR   (prints how many files it wrote)
"""
import base64
import hashlib
import os
import re
import sys

PEM = re.compile(r"-----BEGIN CERTIFICATE-----\s+([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----")


def certificates(path):
    with open(path, encoding="ascii", errors="replace") as handle:
        for match in PEM.finditer(handle.read()):
            der = base64.b64decode("".join(match.group(1).split()))
            yield hashlib.sha256(der).hexdigest(), match.group(0)


bundle, store, local = sys.argv[1:4]
known = {digest for digest, _ in certificates(store)} if os.path.exists(store) else set()
written = 0
for digest, pem in certificates(bundle):
    target = os.path.join(local, f"image-{digest[:16]}.crt")
    if digest in known or os.path.exists(target):
        continue
    with open(target + ".part", "w") as out:
        out.write(pem + "\n")
    os.chmod(target + ".part", 0o644)
    os.replace(target + ".part", target)
    written += 1
print(written)
