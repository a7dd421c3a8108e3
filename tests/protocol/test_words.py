"""Codes people can say: parsing as people type, typo suggestions, Tab completion."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xfer.protocol.words import (
    CodeError,
    SpokenCode,
    closest_word,
    complete,
    edit_distance,
    new_code,
    parse_code,
    wordlist,
)


def test_the_word_list_is_the_eff_short_list_2():
    words = wordlist()
    assert len(words) == 1296
    assert len({w[:3] for w in words}) == 1296  # unique three-letter prefixes
    assert all(w.isascii() and w.isalpha() and w.islower() for w in words)
    # at least three edits apart, which is what makes a one-typo suggestion unambiguous
    sample = words[::7]
    assert min(edit_distance(a, b) for i, a in enumerate(sample) for b in sample[i + 1 :]) == 3


def test_a_new_code_reads_back():
    code = new_code(7)
    assert str(code).startswith("7-") and len(code.words) == 2
    assert parse_code(str(code)) == code
    assert len(new_code(12, 4).words) == 4
    assert code.password == "-".join(code.words).encode()


@pytest.mark.parametrize(
    "typed",
    ["7-astronaut-avocado", "7 Astronaut Avocado", " 7-ASTRONAUT-avocado ", "7-ast-avo", "7_astro.avoca"],
)
def test_codes_as_people_type_them(typed):
    assert parse_code(typed) == SpokenCode(7, ("astronaut", "avocado"))


def test_a_typo_gets_a_suggestion():
    with pytest.raises(CodeError) as caught:
        parse_code("7-astronot-avocado")
    assert "no such word in a code: astronot" in str(caught.value)
    assert caught.value.suggestion == "7-astronaut-avocado"
    assert "Did you mean 7-astronaut-avocado?" in str(caught.value)


@pytest.mark.parametrize(
    "typed", ["", "astronaut-avocado", "7", "7-", "1234567-astronaut", "0-astronaut", "x" * 500, "7-zzzzzzzz"]
)
def test_what_is_not_a_code(typed):
    with pytest.raises(CodeError):
        parse_code(typed)


def test_completion_of_the_last_word():
    assert complete("7-astronaut-avo") == ["7-astronaut-avocado"]
    assert "7-astronaut" in complete("7-ast")
    assert complete("7-nosuchword-a") == []
    assert complete("seven-a") == []
    assert len(complete("7-")) == 50


@given(st.text(max_size=300))
def test_parse_code_raises_only_code_errors(text):
    try:
        code = parse_code(text)
    except CodeError:
        return
    assert parse_code(str(code)) == code


@given(st.sampled_from(wordlist()), st.integers(0, 20), st.sampled_from("abcdefghijklmnopqrstuvwxyz"))
def test_one_typo_is_always_corrected(word, at, letter):
    at = at % len(word)
    typo = word[:at] + letter + word[at + 1 :]
    if typo != word:
        assert closest_word(typo) == word
