"""The room's page URL as a QR code made of text, for phones to scan."""

from __future__ import annotations

import io


def qr_text(url: str) -> str:
    """Half-block characters, dark modules drawn as spaces on a light background.

    ``invert=True`` draws the light modules (and the quiet zone) with block
    characters, so the code reads dark-on-light on dark terminals and light
    ones alike: the terminal's own background becomes the dark modules.
    """
    import qrcode

    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2)
    qr.add_data(url)
    qr.make(fit=True)
    out = io.StringIO()
    qr.print_ascii(out=out, tty=False, invert=True)
    return out.getvalue()
