"""The one place where an error becomes what a person reads and an exit status.

As httpie's ``status.py`` and ``core.py``: a command body raises, ``run_command``
catches, ``failure`` says what it means, the display shows it in one line, and the
command exits with the status. ``--debug`` adds the traceback. No command prints
errors of its own.

Exit statuses come from the exception tree (``XferError.exit_code``, listed in
``xfer.protocol.errors`` and docs/cli.md); the ones that are not an ``XferError``
are here.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..errors import XferError

if TYPE_CHECKING:
    from .context import Environment

EXIT_OK = 0
EXIT_BUG = 1  # anything we did not foresee: a bug, shown in one line (the traceback with --debug)
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
EXIT_CODE = 10  # the code: it did not match, too many wrong ones were tried, or --verify's words differed

# What Ctrl-C means for each side, so that a person knows what is left behind.
INTERRUPTED = {
    "send": "interrupted; the receiver was told to stop",
    "receive": "interrupted; what arrived so far stays hidden in the folder: run the same command again to resume",
    "serve": "interrupted",
}


@dataclass(frozen=True)
class Failure:
    """How a command ended badly: the message (raw: displays escape it), its code, the status."""

    message: str
    code: str
    exit_status: int
    calm: bool = False  # an ordinary stop (Ctrl-C, a decline): not shown as what went wrong


def failure(exc: BaseException, role: str) -> Failure:
    """What ``exc`` means to the person who ran ``xfer ROLE``."""
    from ..protocol.guard import CodeSpent
    from ..protocol.keys import WrongCode

    if isinstance(exc, CodeSpent):  # the sender: someone kept guessing
        return Failure(str(exc), exc.code, EXIT_CODE)
    if isinstance(exc, WrongCode):  # a receiver: its code and the sender's differ
        return Failure("the code did not match: check it with the sender", exc.code, EXIT_CODE)
    from ..errors import Declined, Interrupted

    if isinstance(exc, XferError):
        return Failure(str(exc), exc.code, exc.exit_code, calm=isinstance(exc, (Declined, Interrupted)))
    if isinstance(exc, KeyboardInterrupt):
        return Failure(INTERRUPTED.get(role, "interrupted"), "interrupted", EXIT_INTERRUPTED, calm=True)
    return Failure(
        f"unexpected error: {type(exc).__name__}: {exc} (run with --debug for details)", XferError.code, EXIT_BUG
    )


class ShowsFailures(Protocol):
    def error(self, failure: Failure) -> None: ...


def run_command(
    body: Callable[[], None],
    display: ShowsFailures,
    env: Environment,
    *,
    role: str,
    debug: bool = False,
    close: Callable[[], None] | None = None,
) -> int:
    """Run a command's body; on an error, show it once and return its exit status."""
    try:
        body()
        return EXIT_OK
    except (Exception, KeyboardInterrupt) as exc:
        what = failure(exc, role)
        display.error(what)
        if debug and not isinstance(exc, KeyboardInterrupt):
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=env.stderr)
            env.stderr.flush()
        return what.exit_status
    finally:
        if close is not None:
            close()
