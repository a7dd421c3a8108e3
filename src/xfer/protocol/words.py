"""Codes people can say: a nameplate and words, like ``7-astronaut-avocado``.

The nameplate (a small number) is what the relay uses to put peers together; the
words are the password of the PAKE between each receiver and the sender, and never
reach the relay in any form it could test offline.

The words come from the EFF's short word list 2.0 ("eff-special" in the ``xkcdpass``
package, CC BY 3.0 US; docs/protocol.md says more): 1,296 words chosen for people,
each with a unique three-letter prefix and at least three edits away from any other.
So a word can be completed from three letters, and a single typo is recognised and
corrected with a suggestion rather than failing as a network error later.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from functools import cache
from importlib import resources

from .errors import ProtocolError

DEFAULT_WORDS = 2  # 2 x 10.3 bits: an online guess wins once in 1.7 million, and costs the guesser the room
MIN_WORDS = 1
MAX_WORDS = 8
MAX_NAMEPLATE = 999_999
MAX_CODE_CHARS = 200
_SEPARATORS = re.compile(r"[\s\-_.,]+")
_NAMEPLATE = re.compile(r"^[0-9]{1,6}$")


@cache
def wordlist() -> tuple[str, ...]:
    """The 1,296 words, in their list's order."""
    text = resources.files("xkcdpass").joinpath("static/eff-special").read_text("utf-8")
    # "yo-yo" is the list's one word with a hyphen, which separates a code's words here
    words = tuple(line.strip().replace("yo-yo", "yoyo") for line in text.splitlines() if line.strip())
    if len(words) != 1296 or len({w[:3] for w in words}) != len(words):
        raise RuntimeError("the EFF short word list in xkcdpass is not the one xfer expects")
    return words


@cache
def _by_prefix() -> dict[str, str]:
    return {w[:3]: w for w in wordlist()}


class CodeError(ProtocolError):
    """A code that is not a nameplate and known words; ``suggestion`` is the code as it
    was probably meant, when every unknown word is one typo from a known one."""

    code = "bad-code"

    def __init__(self, message: str, suggestion: str | None = None) -> None:
        super().__init__(message)
        self.suggestion = suggestion


@dataclass(frozen=True)
class SpokenCode:
    nameplate: int
    words: tuple[str, ...]

    def __post_init__(self) -> None:
        if not 1 <= self.nameplate <= MAX_NAMEPLATE:
            raise CodeError(f"a code starts with a number from 1 to {MAX_NAMEPLATE}")
        if not MIN_WORDS <= len(self.words) <= MAX_WORDS:
            raise CodeError(f"a code has {MIN_WORDS} to {MAX_WORDS} words")
        known = set(wordlist())
        if any(w not in known for w in self.words):
            raise CodeError("a code's words come from xfer's word list")

    def __str__(self) -> str:
        return "-".join((str(self.nameplate), *self.words))

    @property
    def password(self) -> bytes:
        """What the PAKE takes: the words only (the relay sees the nameplate)."""
        return "-".join(self.words).encode("ascii")


def new_code(nameplate: int, words: int = DEFAULT_WORDS) -> SpokenCode:
    """A code with ``words`` random words for ``nameplate``."""
    if not MIN_WORDS <= words <= MAX_WORDS:
        raise ValueError(f"a code has {MIN_WORDS} to {MAX_WORDS} words")
    choices = wordlist()
    return SpokenCode(nameplate, tuple(secrets.choice(choices) for _ in range(words)))


def edit_distance(a: str, b: str, *, limit: int = 3) -> int:
    """Levenshtein distance of ``a`` and ``b``, or ``limit`` when it is at least that."""
    if abs(len(a) - len(b)) >= limit:
        return limit
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) >= limit:
            return limit
        previous = current
    return min(previous[-1], limit)


def closest_word(typed: str) -> str | None:
    """The word ``typed`` was meant to be: the one a single edit away (the list's words are
    three apart, so there is at most one), else the only one two edits away, else None."""
    distances = [(edit_distance(typed, w), w) for w in wordlist()]
    for edits in (1, 2):
        near = [w for d, w in distances if d == edits]
        if near:
            return near[0] if len(near) == 1 else None
    return None


def _word(typed: str) -> str | None:
    """A known word for what was typed: the word itself, or its unique prefix of three letters or more."""
    if typed in _by_prefix().values():
        return typed
    word = _by_prefix().get(typed[:3]) if len(typed) >= 3 else None
    return word if word is not None and word.startswith(typed) else None


def parse_code(text: str) -> SpokenCode:
    """Read a code as a person typed it: any case, spaces or hyphens, words or their
    first letters (three at least). Raises ``CodeError``, with a suggestion for typos."""
    if len(text) > MAX_CODE_CHARS:
        raise CodeError("that is too long to be a code")
    parts = [p for p in _SEPARATORS.split(text.strip().lower()) if p]
    if not parts or not _NAMEPLATE.match(parts[0]):
        raise CodeError("a code starts with a number, like 7-astronaut-avocado")
    nameplate = int(parts[0])
    if not parts[1:]:
        raise CodeError("a code has words after its number, like 7-astronaut-avocado")
    words: list[str] = []
    unknown: list[str] = []
    fixed: list[str] = []
    for typed in parts[1:]:
        word = _word(typed)
        if word is None:
            unknown.append(typed)
            word = closest_word(typed) or ""
        words.append(word)
        fixed.append(word)
    if unknown:
        first = unknown[0]
        suggestion = "-".join((str(nameplate), *fixed)) if all(fixed) else None
        hint = f" Did you mean {suggestion}?" if suggestion else ""
        raise CodeError(f"no such word in a code: {first[:40]}.{hint}", suggestion)
    return SpokenCode(nameplate, tuple(words))


def complete(text: str, limit: int = 50) -> list[str]:
    """Completions of a partly typed code, for Tab: the whole code so far with each
    word that the last part may begin (at most ``limit``)."""
    if len(text) > MAX_CODE_CHARS:
        return []
    parts = _SEPARATORS.split(text.lower())
    if len(parts) < 2 or not _NAMEPLATE.match(parts[0]) or int(parts[0]) < 1:  # no room 0: not a code
        return []
    head, last = parts[:-1], parts[-1]
    done = [_word(p) for p in head[1:]]
    if any(w is None for w in done):
        return []
    stem = "-".join([head[0], *(w for w in done if w)])
    return [f"{stem}-{w}" for w in wordlist() if w.startswith(last)][:limit]
