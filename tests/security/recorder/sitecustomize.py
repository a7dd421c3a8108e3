"""Loaded at start-up by every Python process that has this folder on its PYTHONPATH
(test_nonces.py puts it there for the ``xfer`` processes it runs): records every key
and nonce that AES-GCM seals with, one line per seal, in a file of this process under
the folder ``XFER_TEST_NONCES`` names. It only observes: each call goes on to the real
AES-GCM of ``cryptography``. Keys are recorded as a digest, never themselves."""

import os

_folder = os.environ.get("XFER_TEST_NONCES")
if _folder:
    import hashlib
    import threading

    from cryptography.hazmat.primitives.ciphers import aead

    _Real = aead.AESGCM
    _lock = threading.Lock()
    _out = open(os.path.join(_folder, f"{os.getpid()}.seals"), "a", buffering=1)  # noqa: SIM115 (for the process's life)

    class RecordingAESGCM:
        generate_key = staticmethod(_Real.generate_key)

        def __init__(self, key):
            self._key = hashlib.sha256(bytes(key)).hexdigest()[:32]
            self._real = _Real(key)

        def encrypt(self, nonce, data, associated_data):
            with _lock:
                _out.write(f"{self._key} {bytes(nonce).hex()}\n")  # a line, written at once: kill -9 loses none
            return self._real.encrypt(nonce, data, associated_data)

        def encrypt_into(self, nonce, data, associated_data, buf):
            with _lock:
                _out.write(f"{self._key} {bytes(nonce).hex()}\n")
            return self._real.encrypt_into(nonce, data, associated_data, buf)

        def decrypt(self, nonce, data, associated_data):
            return self._real.decrypt(nonce, data, associated_data)

        def decrypt_into(self, nonce, data, associated_data, buf):
            return self._real.decrypt_into(nonce, data, associated_data, buf)

    aead.AESGCM = RecordingAESGCM
