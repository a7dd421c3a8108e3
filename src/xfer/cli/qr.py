"""The room's page URL as a QR code made of text, for phones to scan."""

from __future__ import annotations

import io
import os
import sys

# White on near-black, the colours qrcode's own tty mode uses: with them the code
# reads dark-on-light whatever the terminal's own colours are.
_COLOURS = "\x1b[38;5;255;48;5;232m"
_RESET = "\x1b[0m"


def qr_text(url: str, *, colour: bool | None = None) -> str:
    """Half-block characters, two modules per character cell (37 columns for a
    60-character URL, so it fits an 80-column terminal).

    ``invert=True`` draws the light modules (and the quiet zone) with block
    characters, dark modules as blanks: on a dark terminal the code reads
    dark-on-light, as scanners expect. On a light terminal that would come out
    inverted, so with ``colour`` (None: stderr is a tty and NO_COLOR is unset or
    empty) each line also sets white-on-black colours explicitly. Without them (NO_COLOR)
    the code reads right on dark terminals and inverted on light ones.
    """
    import qrcode

    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2)
    qr.add_data(url)
    qr.make(fit=True)
    out = io.StringIO()
    qr.print_ascii(out=out, tty=False, invert=True)
    text = out.getvalue()
    if colour is None:  # (https://no-color.org: an empty NO_COLOR is not set)
        colour = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    if colour:
        text = "".join(f"{_COLOURS}{line}{_RESET}\n" for line in text.splitlines())
    return text
