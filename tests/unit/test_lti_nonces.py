"""roles/lti/files/hubfleet_nonces.py: launch nonces outlive the hub process, each for its validity window."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.modules import load_file

MODULE = Path(__file__).resolve().parents[2] / "roles" / "lti" / "files" / "hubfleet_nonces.py"


@pytest.fixture(scope="module")
def nonces():
    return load_file("roles/lti/files/hubfleet_nonces.py")


def test_a_nonce_is_good_once_until_it_expires(nonces):
    store = nonces.NonceStore()
    now = time.time()
    assert store.seen_before("1.1\0key\0n1", now + 60) is False
    assert store.seen_before("1.1\0key\0n1", now + 60) is True
    assert store.seen_before("1.1\0other-key\0n1", now + 60) is False, "per consumer"
    assert store.seen_before("1.1\0key\0old", now - 1) is False
    assert store.seen_before("1.1\0key\0old", now + 60) is False, "an expired entry no longer counts"


def test_a_hub_killed_with_sigkill_still_refuses_the_replay(nonces, tmp_path):
    path = tmp_path / "lti-nonces.sqlite"
    code = (f"import sys, time, os, signal; sys.path.insert(0, {str(MODULE.parent)!r}); import hubfleet_nonces; "
            f"s = hubfleet_nonces.NonceStore({str(path)!r}); "
            "print(s.seen_before('1.3\\0abc', time.time() + 300), flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL and proc.stdout.strip() == "False"
    assert path.stat().st_mode & 0o777 == 0o600, "the file tells who launched when"
    again = nonces.NonceStore(str(path))
    assert again.seen_before("1.3\0abc", time.time() + 300) is True
    assert again.seen_before("1.3\0abd", time.time() + 300) is False
    again.close()


def test_expired_nonces_are_pruned_and_a_full_store_refuses(nonces, tmp_path):
    store = nonces.NonceStore(str(tmp_path / "n.sqlite"), limit=3)
    now = time.time()
    for n in range(3):
        assert store.seen_before(f"live-{n}", now + 300) is False
    assert store.seen_before("one-more", now + 300) is True, "full of live nonces: refuse rather than forget"
    store.close()
    reopened = nonces.NonceStore(str(tmp_path / "n.sqlite"), limit=3)
    assert reopened.seen_before("live-0", now + 300) is True
    short = nonces.NonceStore(str(tmp_path / "m.sqlite"), limit=2)
    assert short.seen_before("a", time.time() + 0.2) is False
    assert short.seen_before("b", time.time() + 0.2) is False
    time.sleep(0.3)
    assert short.seen_before("c", time.time() + 300) is False, "expired entries make room"
