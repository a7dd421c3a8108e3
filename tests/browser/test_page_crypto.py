"""The page's own AES-256-GCM, HMAC-SHA256 and HKDF-SHA256 (src/xfer/web/aes.js, hkdf.js,
e2e.js) in headless Chromium: published test vectors, then Python's ``cryptography`` and
``xfer.protocol.keys`` on random inputs, then WebCrypto on a page that has it.

The page's own code exists for pages that are not a secure context (a phone at
http://192.168.x.x has no crypto.subtle), so it is tested on such a page: the web
directory served by a static HTTP server in this module, opened at http://lan.test:PORT
(Chromium maps the name to 127.0.0.1). The same files at http://127.0.0.1:PORT form a
secure context, where WebCrypto and the page's code must agree.

Every vector below is typed from its document and checked against ``cryptography`` too,
so a typo in a vector fails the test instead of testing nothing.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import http.server
import os
import random
import threading
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pagekit import LAN_HOST, browser, playwright  # noqa: F401

from conftest import bounded
from xfer.protocol import keys

WEB = Path(__file__).resolve().parents[2] / "src" / "xfer" / "web"
BLANK = b"<!doctype html><meta charset=utf-8><title>page crypto</title>"

pytestmark = pytest.mark.timeout(180)


class _Files(http.server.SimpleHTTPRequestHandler):
    """The web directory's files as they are; ``/`` is a blank page to import them from."""

    def do_GET(self) -> None:
        if self.path == "/":
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(BLANK)))
            self.end_headers()
            self.wfile.write(BLANK)
            return
        super().do_GET()

    def log_message(self, format, *args) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def static_port():
    handler = functools.partial(_Files, directory=str(WEB))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


def _open(browser, url: str):
    context = browser.new_context()
    context.set_default_timeout(bounded(30_000))
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    return context, page, errors


@pytest.fixture(scope="module")
def lan(browser, static_port):
    """A page that is not a secure context, like a phone's at http://192.168.x.x."""
    context, page, errors = _open(browser, f"http://{LAN_HOST}:{static_port}/")
    yield page
    context.close()
    assert not errors, errors


@pytest.fixture(scope="module")
def local(browser, static_port):
    """A secure context (loopback): WebCrypto exists."""
    context, page, errors = _open(browser, f"http://127.0.0.1:{static_port}/")
    yield page
    context.close()
    assert not errors, errors


# Helpers every script gets: bytes in and out as base64, the modules imported.
PRELUDE = """
    const b = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
    const s = (u) => { let t = ""; for (let i = 0; i < u.length; i += 8192) t += String.fromCharCode(...u.subarray(i, i + 8192)); return btoa(t); };
    const aes = await import("./aes.js");
    const kdf = await import("./hkdf.js");
    const e2e = await import("./e2e.js");
    const attempt = async (f) => { try { return s(await f()); } catch (err) { return err.name; } };
"""


def run(page, body: str, arg=None):
    """Run ``body`` (JavaScript, with ``arg`` and the prelude's helpers) in the page."""
    return page.evaluate(f"async (arg) => {{ {PRELUDE} {body} }}", arg)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


h = bytes.fromhex


# -- where the page stands ------------------------------------------------------


def test_the_lan_page_has_no_webcrypto_and_picks_its_own(lan, local):
    assert lan.evaluate("[window.isSecureContext, typeof crypto.subtle]") == [False, "undefined"]
    assert run(
        lan, "return [e2e.hasWebCrypto(), e2e.backend().name, (await e2e.importKey(new Uint8Array(32))).backend];"
    ) == [
        False,
        "page",
        "page",
    ]
    assert run(lan, "try { e2e.backend('webcrypto'); return 'no error'; } catch (err) { return err.message; }") == (
        "WebCrypto is missing here (not a secure context)"
    )
    assert local.evaluate("[window.isSecureContext, typeof crypto.subtle]") == [True, "object"]
    assert run(local, "return [e2e.backend().name, (await e2e.importKey(new Uint8Array(32))).backend];") == [
        "webcrypto",
        "webcrypto",
    ]


# -- published vectors ----------------------------------------------------------


def test_aes256_fips197_example(lan):
    """FIPS 197, Appendix C.3: AES-256 of one block."""
    key, plain, cipher = bytes(range(32)), h("00112233445566778899aabbccddeeff"), h("8ea2b7ca516745bfeafc49904b496089")
    assert Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(plain) == cipher
    assert unb64(run(lan, "return s(aes.aes256Block(b(arg[0]), b(arg[1])));", [b64(key), b64(plain)])) == cipher


K15 = h("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
P15 = h(
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255"
)
A16 = h("feedfacedeadbeeffeedfacedeadbeefabaddad2")
C15 = (
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad"
)
# McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", test cases 13 to 18 (AES-256):
# (case, key, IV, plaintext, AAD, ciphertext, tag).
GCM_CASES = [
    (13, bytes(32), bytes(12), b"", b"", "", "530f8afbc74536b9a963b4f1c4cb738b"),
    (14, bytes(32), bytes(12), bytes(16), b"", "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"),
    (15, K15, h("cafebabefacedbaddecaf888"), P15, b"", C15, "b094dac5d93471bdec1a502270e3cc6c"),
    (16, K15, h("cafebabefacedbaddecaf888"), P15[:60], A16, C15[:120], "76fc6ece0f4e1768cddf8853bb2d551b"),
    (
        17,
        K15,
        h("cafebabefacedbad"),  # an 8-byte IV: J0 = GHASH(IV)
        P15[:60],
        A16,
        "c3762df1ca787d32ae47c13bf19844cbaf1ae14d0b976afac52ff7d79bba9de0"
        "feb582d33934a4f0954cc2363bc73f7862ac430e64abe499f47c9b1f",
        "3a337dbf46a792c45e454913fe2ea8f2",
    ),
    (
        18,
        K15,
        h(  # a 60-byte IV
            "9313225df88406e555909c5aff5269aa6a7a9538534f7da1e4c303d2a318a728"
            "c3c0c95156809539fcf0e2429a6b525416aedbf5a0de6a57a637b39b"
        ),
        P15[:60],
        A16,
        "5a8def2f0c9e53f1f75d7853659e2a20eeb2b22aafde6419a058ab4f6f746bf4"
        "0fc0c3b780f244452da3ebf1c5d82cdea2418997200ef82e44ae7e3f",
        "a44a8266ee1c8eb0c8b5d4cf5ae9f19a",
    ),
]


def test_aes256_gcm_spec_test_cases_13_to_18(lan):
    for case, key, iv, plain, aad, cipher, tag in GCM_CASES:
        sealed = h(cipher + tag)
        assert AESGCM(key).encrypt(iv, plain, aad) == sealed, f"vector {case} mistyped"
        got = run(
            lan,
            """const g = new aes.AesGcm(b(arg[0]));
               const sealed = g.seal(b(arg[1]), b(arg[2]), b(arg[3]));
               const opened = g.open(b(arg[1]), sealed, b(arg[3]));
               const bad = sealed.slice(); bad[bad.length - 1] ^= 0x80;
               return [s(sealed), opened === null ? null : s(opened), g.open(b(arg[1]), bad, b(arg[3]))];""",
            [b64(key), b64(iv), b64(plain), b64(aad)],
        )
        assert [unb64(got[0]), unb64(got[1]), got[2]] == [sealed, plain, None], f"test case {case}"


# RFC 4231, test cases 1 to 7: (key, data, HMAC-SHA-256); case 5 is truncated to 128 bits.
HMAC_CASES = [
    (b"\x0b" * 20, b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b"),
    (
        b"\xaa" * 131,
        b"Test Using Larger Than Block-Size Key - Hash Key First",
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    ),
    (
        b"\xaa" * 131,
        b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be"
        b" hashed before being used by the HMAC algorithm.",
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
    ),
]


def test_hmac_sha256_rfc4231(lan):
    for number, (key, data, mac) in enumerate(HMAC_CASES, 1):
        assert hmac.new(key, data, hashlib.sha256).hexdigest().startswith(mac), f"vector {number} mistyped"
        got = run(lan, "return s(kdf.hmacSha256(b(arg[0]), b(arg[1])));", [b64(key), b64(data)])
        assert unb64(got).hex().startswith(mac), f"RFC 4231 test case {number}"


# RFC 5869, test cases 1 to 3 (SHA-256): (IKM, salt, info, L, PRK, OKM).
HKDF_CASES = [
    (
        b"\x0b" * 22,
        h("000102030405060708090a0b0c"),
        h("f0f1f2f3f4f5f6f7f8f9"),
        42,
        "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
    ),
    (
        bytes(range(0x00, 0x50)),
        bytes(range(0x60, 0xB0)),
        bytes(range(0xB0, 0x100)),
        82,
        "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da32"
        "75600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87",
    ),
    (
        b"\x0b" * 22,
        b"",
        b"",
        42,
        "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
    ),
]


def test_hkdf_sha256_rfc5869(lan):
    for number, (ikm, salt, info, length, prk, okm) in enumerate(HKDF_CASES, 1):
        assert hmac.new(salt or bytes(32), ikm, hashlib.sha256).hexdigest() == prk, f"vector {number} mistyped"
        assert HKDF(hashes.SHA256(), length, salt or None, info).derive(ikm).hex() == okm, f"vector {number} mistyped"
        got = run(
            lan,
            """const [ikm, salt, info] = [b(arg[0]), b(arg[1]), b(arg[2])];
               return [s(kdf.hkdfExtract(salt, ikm)), s(kdf.hkdf(ikm, salt, info, arg[3])),
                       s(await e2e.hkdf(ikm, salt, info, arg[3]))];""",
            [b64(ikm), b64(salt), b64(info), length],
        )
        assert [unb64(x).hex() for x in got] == [prk, okm, okm], f"RFC 5869 test case {number}"


# -- against Python -------------------------------------------------------------

SIZES = [0, 1, 15, 16, 17, 31, 32, 33, 64, 255, 1000, 4099, 65536, 256 * 1024, 256 * 1024 + 17]

# Open ``arg``'s frames in the page: each as sent, with a bit flipped, and with a wrong AAD.
OPEN_ALL = """
    const out = [];
    for (const [key, nonce, sealed, aad, flip] of arg) {
        const k = await e2e.importKey(b(key), "page");
        const bad = b(sealed); bad[flip >> 3] ^= 1 << (flip & 7);
        const wrongAad = b(aad).length ? b(aad).map((x, i) => i === 0 ? x ^ 1 : x) : new Uint8Array([0]);
        out.push([await attempt(() => k.open(b(nonce), b(sealed), b(aad))),
                  await attempt(() => k.open(b(nonce), bad, b(aad))),
                  await attempt(() => k.open(b(nonce), b(sealed), wrongAad))]);
    }
    return out;
"""

SEAL_ALL = """
    const out = [];
    for (const [key, nonce, plain, aad] of arg) out.push(s(await (await e2e.importKey(b(key), "page")).seal(b(nonce), b(plain), b(aad))));
    return out;
"""


def _cases(rng: random.Random):
    for size in SIZES:
        for _ in range(2 if size < 100_000 else 1):
            yield (
                rng.randbytes(32),
                rng.randbytes(12),
                rng.randbytes(size),
                rng.randbytes(rng.choice([0, 1, 13, 16, 20, 40, 300])),
            )


def test_aes256_gcm_python_seals_page_opens(lan):
    rng = random.Random(2026)
    cases = list(_cases(rng))
    frames = []
    for key, nonce, plain, aad in cases:
        sealed = AESGCM(key).encrypt(nonce, plain, aad)
        frames.append([b64(key), b64(nonce), b64(sealed), b64(aad), rng.randrange(8 * len(sealed))])
    results = run(lan, OPEN_ALL, frames)
    for (_, _, plain, aad), (opened, flipped, wrong_aad) in zip(cases, results):
        assert unb64(opened) == plain, (len(plain), len(aad))
        assert (flipped, wrong_aad) == ("Tampered", "Tampered"), (len(plain), len(aad))


def test_aes256_gcm_page_seals_python_opens(lan):
    rng = random.Random(2027)
    cases = list(_cases(rng))
    sealed_all = run(lan, SEAL_ALL, [[b64(x) for x in case] for case in cases])
    for (key, nonce, plain, aad), text in zip(cases, sealed_all):
        sealed = unb64(text)
        assert sealed == AESGCM(key).encrypt(nonce, plain, aad), (len(plain), len(aad))
        assert AESGCM(key).decrypt(nonce, sealed, aad) == plain
        flip = rng.randrange(8 * len(sealed))
        bad = bytearray(sealed)
        bad[flip >> 3] ^= 1 << (flip & 7)
        with pytest.raises(InvalidTag):
            AESGCM(key).decrypt(nonce, bytes(bad), aad)
        with pytest.raises(InvalidTag):
            AESGCM(key).decrypt(nonce, sealed, aad + b"\0")


def test_aes_gcm_other_nonce_lengths_and_views(lan):
    """aes.js itself takes any nonce length (J0 = GHASH(nonce) unless it has 12 bytes, as in
    test cases 17 and 18), and bytes that are a view into a larger buffer at an odd offset."""
    rng = random.Random(3)
    cases = [
        (rng.randbytes(32), rng.randbytes(n), rng.randbytes(rng.randrange(0, 100)), rng.randbytes(rng.randrange(0, 40)))
        for n in (8, 11, 13, 16, 17, 32, 60, 100, 128)
    ]
    got = run(
        lan,
        """const out = [];
           for (const [key, nonce, plain, aad] of arg) {
               const g = new aes.AesGcm(b(key));
               const sealed = g.seal(b(nonce), b(plain), b(aad));
               const buffer = new Uint8Array(sealed.length + 7); buffer.set(sealed, 3);
               const opened = g.open(b(nonce), buffer.subarray(3, 3 + sealed.length), b(aad));
               out.push([s(sealed), s(opened)]);
           }
           return out;""",
        [[b64(x) for x in case] for case in cases],
    )
    for (key, nonce, plain, aad), (sealed, opened) in zip(cases, got):
        assert unb64(sealed) == AESGCM(key).encrypt(nonce, plain, aad), len(nonce)
        assert unb64(opened) == plain


def test_short_or_malformed_input_is_refused(lan):
    got = run(
        lan,
        """const k = await e2e.importKey(new Uint8Array(32), "page");
           const out = [];
           for (const sealed of [new Uint8Array(0), new Uint8Array(15)]) out.push(await attempt(() => k.open(new Uint8Array(12), sealed)));
           out.push(await attempt(() => k.seal(new Uint8Array(11), new Uint8Array(1))));
           out.push(await attempt(() => e2e.importKey(new Uint8Array(16), "page")));
           out.push(await attempt(() => k.seal(new Uint8Array(12), "text, as UTF-8: é", "aad")));
           return out;""",
    )
    assert got[:4] == ["Tampered", "Tampered", "TypeError", "TypeError"]
    assert unb64(got[4]) == AESGCM(bytes(32)).encrypt(bytes(12), "text, as UTF-8: é".encode(), b"aad")


def test_channels_and_content_keys_of_keys_py_open_in_the_page(lan):
    """keys.Channel's counter nonces and keys.ContentKey's (index, offset) nonces, built by
    e2e.counterNonce and e2e.chunkNonce, and e2e.Channel keeping the counter itself; the page's
    frames open in Python in turn."""
    rng = random.Random(5)
    channel_key = rng.randbytes(32)
    channel = keys.Channel(channel_key)
    messages = [rng.randbytes(rng.randrange(0, 300)) for _ in range(5)]
    frames = [b64(channel.seal(m, b"frame")) for m in messages]
    content = keys.ContentKey()
    chunks = [(0, 0), (1, 262144), (7, 2**40 + 3), (2**32 - 1, 2**53 - 1)]
    data = [rng.randbytes(1000) for _ in chunks]
    headers = [b"header %d" % i for i in range(len(chunks))]
    sealed_chunks = [b64(content.seal(i, o, d, hd)) for (i, o), d, hd in zip(chunks, data, headers)]
    got = run(
        lan,
        """const [channelKey, frames, contentKey, chunks, sealedChunks, headers] = arg;
           const ch = await e2e.importKey(b(channelKey));
           const opened = [];
           for (let i = 0; i < frames.length; i++) opened.push(s(await ch.open(e2e.counterNonce(i), b(frames[i]), "frame")));
           const ck = await e2e.importKey(b(contentKey));
           const chunkPlain = [];
           for (let i = 0; i < chunks.length; i++) chunkPlain.push(s(await ck.open(e2e.chunkNonce(...chunks[i]), b(sealedChunks[i]), b(headers[i]))));
           const replayed = await attempt(() => ch.open(e2e.counterNonce(frames.length), b(frames[0]), "frame"));
           const moved = await attempt(() => ck.open(e2e.chunkNonce(0, 1), b(sealedChunks[0]), b(headers[0])));
           const back = [];
           for (let i = 0; i < 3; i++) back.push(s(await ch.seal(e2e.counterNonce(i), new Uint8Array([i, i]), "back")));
           // e2e.Channel keeps the counter itself: the same frames, in order; then a replay fails.
           const channel = await e2e.Channel.create(b(channelKey));
           const viaChannel = [];
           for (const f of frames) viaChannel.push(s(await channel.open(b(f), "frame")));
           viaChannel.push(await attempt(() => channel.open(b(frames[0]), "frame")));
           const sending = await e2e.Channel.create(b(channelKey));
           const overlapping = await Promise.all([0, 1, 2].map((i) => sending.seal(new Uint8Array([i, i]), "back")));
           back.push(...overlapping.map(s));
           const nonces = [s(e2e.counterNonce(0)), s(e2e.counterNonce(2 ** 40 + 3)), s(e2e.chunkNonce(2 ** 32 - 1, 2 ** 53 - 1))];
           return { opened, chunkPlain, replayed, moved, back, nonces, viaChannel };""",
        [b64(channel_key), frames, b64(content.key), chunks, sealed_chunks, [b64(x) for x in headers]],
    )
    assert [unb64(x) for x in got["opened"]] == messages
    assert [unb64(x) for x in got["chunkPlain"]] == data
    assert (got["replayed"], got["moved"]) == ("Tampered", "Tampered")
    assert [unb64(x) for x in got["viaChannel"][:-1]] == messages
    assert got["viaChannel"][-1] == "Tampered"
    receiving = keys.Channel(channel_key)
    assert [receiving.open(unb64(x), b"back") for x in got["back"][:3]] == [bytes([i, i]) for i in range(3)]
    assert got["back"][3:] == got["back"][:3]  # e2e.Channel's overlapping seals took counters 0, 1, 2
    assert [unb64(x) for x in got["nonces"]] == [
        keys._COUNTER.pack(0),
        keys._COUNTER.pack(2**40 + 3),
        keys._CHUNK_NONCE.pack(2**32 - 1, 2**53 - 1),
    ]


def test_hkdf_matches_keys_py(lan):
    """e2e.deriveKey against keys.hkdf (its info gets the "xfer v2 " prefix), with and
    without a salt, and the raw HKDF against ``cryptography`` on random inputs."""
    rng = random.Random(9)
    cases = []
    for info in [b"", b"confirm sender", b"control receiver", b"verify", bytes(range(256))]:
        for salt in [None, rng.randbytes(32), rng.randbytes(rng.randrange(1, 200))]:
            for length in [32, 1, 33, 100]:
                cases.append((rng.randbytes(rng.choice([16, 32, 64, 65, 130])), salt, info, length))
    got = run(
        lan,
        """const out = [];
           for (const [key, salt, info, length] of arg) {
               out.push([s(await e2e.deriveKey(b(key), b(info), { salt: salt === null ? null : b(salt), length })),
                         s(await e2e.hkdf(b(key), salt === null ? null : b(salt), b(info), length))]);
           }
           return out;""",
        [[b64(k), None if salt is None else b64(salt), b64(info), length] for k, salt, info, length in cases],
    )
    for (key, salt, info, length), (derived, raw) in zip(cases, got):
        assert unb64(derived) == keys.hkdf(key, info, salt=salt, length=length)
        assert unb64(raw) == HKDF(hashes.SHA256(), length, salt, info).derive(key)
    # The key schedule's own derivations, as the page will compute them.
    pair = keys.PairKeys(os.urandom(32), os.urandom(32), "sender")
    tag = run(
        lan,
        "return s(await e2e.deriveKey(b(arg[0]), 'confirm sender', { salt: b(arg[1]) }));",
        [b64(pair.key), b64(pair.salt)],
    )
    assert unb64(tag) == pair.confirmation()


def test_the_modules_work_in_a_module_worker(lan):
    """Nothing in aes.js, hkdf.js or e2e.js needs the DOM: a module worker on the LAN page
    (where the page hashes today, and where sealing belongs) gets the same bytes."""
    key, nonce, plain, aad = os.urandom(32), os.urandom(12), os.urandom(70_000), b"header"
    got = lan.evaluate(
        """async ([key, nonce, plain, aad]) => {
            const source = `
                const e2e = await import(new URL("e2e.js", "${location.href}").href);
                onmessage = async ({ data: [key, nonce, plain, aad] }) => {
                    const k = await e2e.importKey(key);
                    const okm = await e2e.deriveKey(key, "verify", { salt: nonce });
                    postMessage([k.backend, await k.seal(nonce, plain, aad), okm]);
                };
                postMessage("ready");`;
            const worker = new Worker(URL.createObjectURL(new Blob([source], { type: "text/javascript" })), { type: "module" });
            const b = (t) => Uint8Array.from(atob(t), (c) => c.charCodeAt(0));
            const s = (u) => { let t = ""; for (const x of u) t += String.fromCharCode(x); return btoa(t); };
            const reply = await new Promise((resolve, reject) => {
                worker.onerror = (e) => reject(new Error(e.message));
                worker.onmessage = ({ data }) => {
                    if (data === "ready") worker.postMessage([b(key), b(nonce), b(plain), b(aad)]);
                    else resolve(data);
                };
            });
            worker.terminate();
            return [reply[0], s(reply[1]), s(reply[2])];
        }""",
        [b64(key), b64(nonce), b64(plain), b64(aad)],
    )
    assert got == ["page", b64(AESGCM(key).encrypt(nonce, plain, aad)), b64(keys.hkdf(key, b"verify", salt=nonce))]


# -- WebCrypto and the page's code on a secure-context page ----------------------


def test_webcrypto_and_the_page_agree(local):
    rng = random.Random(13)
    cases = [[b64(x) for x in case] for case in _cases(rng)]
    got = run(
        local,
        """const out = [];
           for (const [key, nonce, plain, aad] of arg) {
               const [w, p] = [await e2e.importKey(b(key), "webcrypto"), await e2e.importKey(b(key), "page")];
               const [sw, sp] = [await w.seal(b(nonce), b(plain), b(aad)), await p.seal(b(nonce), b(plain), b(aad))];
               const bad = sw.slice(); bad[bad.length >> 1] ^= 4;
               out.push([s(sw), s(sp), s(await w.open(b(nonce), sp, b(aad))), s(await p.open(b(nonce), sw, b(aad))),
                         await attempt(() => w.open(b(nonce), bad, b(aad))), await attempt(() => p.open(b(nonce), bad, b(aad))),
                         await attempt(() => w.open(b(nonce), sw.subarray(0, 15), b(aad))),
                         s(await e2e.deriveKey(b(key), b(aad), { salt: b(nonce), length: 77, backend: "webcrypto" })),
                         s(await e2e.deriveKey(b(key), b(aad), { salt: b(nonce), length: 77, backend: "page" })),
                         s(await e2e.hkdf(b(key), null, b(aad), 32, "webcrypto")),
                         s(await e2e.hkdf(b(key), null, b(aad), 32, "page"))]);
           }
           return out;""",
        cases,
    )
    for (key, nonce, plain, aad), row in zip(cases, got):
        sealed = AESGCM(unb64(key)).encrypt(unb64(nonce), unb64(plain), unb64(aad))
        assert row[:4] == [b64(sealed), b64(sealed), plain, plain]
        assert row[4:7] == ["Tampered", "Tampered", "Tampered"]
        assert row[7] == row[8] == b64(keys.hkdf(unb64(key), unb64(aad), salt=unb64(nonce), length=77))
        assert row[9] == row[10] == b64(HKDF(hashes.SHA256(), 32, None, unb64(aad)).derive(unb64(key)))
