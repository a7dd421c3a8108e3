"""Where a code and a relay come from: the command line, XFER_CODE, the prompt, --code,
--code-words and the config file (``xfer config``), run in-process against a real relay
on 127.0.0.1 (test_cli_inprocess.py's ``xfer``), plus the parsers' hostile cases."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli_inprocess import ROOM, xfer

from conftest import bounded, make_file, sha256_of
from xfer.cli.code_input import Completer, code_to_join, given_code, prompt_code
from xfer.cli.config import choose_relay, config_path, read_config
from xfer.cli.context import Environment
from xfer.errors import LocalFileError, UsageError
from xfer.protocol.words import parse_code, wordlist


def test_a_typo_is_a_usage_error_with_the_likely_code_before_any_network(tmp_path):
    # port 1 on loopback refuses: had xfer tried the relay, this would be exit 3
    result = xfer(tmp_path, "receive", "7-gitar-nebula", "--relay", "127.0.0.1:1", "--yes")
    assert result.status == 2
    assert result.lines() == ["xfer: no such word in a code: gitar. Did you mean 7-guitar-nebula?"]
    result = xfer(tmp_path, "send", "--text", "hi", "--room", "7-gitar-nebula", "--relay", "127.0.0.1:1", "--json")
    assert result.status == 2 and result.events()[-1]["code"] == "usage"
    assert "Did you mean 7-guitar-nebula?" in result.events()[-1]["message"]


def test_the_code_as_argument_as_room_and_from_xfer_code_all_join(tmp_path, relay_process):
    relay = f"127.0.0.1:{relay_process.port}"
    for args, variables in (
        (["receive", ROOM], {}),
        (["receive", "--room", ROOM], {}),
        (["receive"], {"XFER_CODE": ROOM}),
        (["send", str(make_file(tmp_path / "a.txt", 5)), "--room", ROOM], {}),
        (["send", str(tmp_path / "a.txt")], {"XFER_CODE": ROOM}),
    ):
        extra = ["--yes"] if args[0] == "receive" else []
        result = xfer(tmp_path, *args, "--relay", relay, *extra, variables=variables)
        # the room of that code was looked for (and nobody opened it): the code was read, not a room opened
        assert result.status == 4, (args, result.stderr)
        assert result.lines()[-1].startswith("xfer: room is not open"), (args, result.stderr)


def test_the_code_given_twice_differently_is_a_usage_error(tmp_path):
    result = xfer(tmp_path, "receive", "7-guitar-nebula", "--room", "8-guitar-nebula", "--yes")
    assert result.status == 2 and "give the code once" in result.lines()[-1]
    result = xfer(tmp_path, "receive", "7-guitar-nebula", "--open", "--yes")
    assert result.status == 2 and "not both" in result.lines()[-1]
    result = xfer(tmp_path, "send", "--text", "x", "--room", "-")  # asks, but stdin is a file
    assert result.status == 2 and "XFER_CODE" in result.lines()[-1]


def test_no_code_and_no_terminal_opens_a_room_as_before(tmp_path, relay_process):
    """Without a terminal there is no prompt: --yes opens a room (a phone or `xfer send --room` joins)."""
    relay = f"127.0.0.1:{relay_process.port}"
    src = make_file(tmp_path / "b.bin", 70_000, 3)
    # the sender opens with a chosen code and three words... (--code and --code-words are checked below)
    import subprocess

    from conftest import xfer_cmd

    receiver = subprocess.Popen(
        [
            *xfer_cmd(),
            "receive",
            "--relay",
            relay,
            "--yes",
            "--json",
            "--dir",
            str(tmp_path / "in"),
            "--code-words",
            "4",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None
        room = json.loads(receiver.stdout.readline())
        assert room["event"] == "room" and re.fullmatch(r"[0-9]+(-[a-z]+){4}", room["code"])
        result = xfer(tmp_path, "send", str(src), "--room", room["code"], "--relay", relay, "--json")
        assert result.status == 0, result.stderr
        assert receiver.wait(bounded(15)) == 0
    finally:
        if receiver.poll() is None:
            receiver.kill()
        receiver.communicate()
    assert sha256_of(tmp_path / "in" / "b.bin") == sha256_of(src)


def test_code_chooses_the_whole_code_and_code_words_its_length(tmp_path, relay_process):
    relay = f"127.0.0.1:{relay_process.port}"
    result = xfer(tmp_path, "send", "--text", "x", "--code", "7-gitar-nebula", "--relay", relay)
    assert result.status == 2 and "Did you mean 7-guitar-nebula?" in result.lines()[-1]
    for words in ("0", "9"):
        result = xfer(tmp_path, "send", "--text", "x", "--code-words", words, "--relay", relay)
        assert result.status == 2 and "--code-words" in result.stderr


def test_prompt_reads_a_line_and_an_empty_answer_opens_only_where_allowed():
    def answer(text):
        return lambda prompt: text

    env = Environment.of(open("/dev/null"), open("/dev/null", "w"), open("/dev/null", "w"), {})
    assert prompt_code(env, answer("7-guitar-nebula")) == "7-guitar-nebula"
    assert prompt_code(env, answer("  "), empty_opens=True) == ""
    with pytest.raises(UsageError, match="no code given"):
        prompt_code(env, answer(""))

    def interrupted(prompt):
        raise KeyboardInterrupt

    with pytest.raises(UsageError, match="no code given"):
        prompt_code(env, interrupted)
    # not a terminal: nothing asks; XFER_CODE is read; a file's stdin never prompts
    assert code_to_join(None, None, env, ask=True) is None
    env = Environment.of(env.stdin, env.stdout, env.stderr, {"XFER_CODE": "7-gui-neb"})
    assert str(code_to_join(None, None, env, ask=True)) == "7-guitar-nebula"
    assert given_code("7-a", "7-a") == "7-a"


def test_tab_completion_walks_a_code_word_by_word():
    complete = Completer()
    assert complete("7-gui", 0) == "7-guitar-"  # one word: on to the next
    assert complete("7-gui", 1) is None
    assert complete("7-guitar-neb", 0) == "7-guitar-nebula-"
    many = [complete("7-b", i) for i in range(60)]
    assert many[0] and all(m.startswith("7-b") for m in many if m) and many[-1] is None
    assert complete("hello", 0) is None and complete("7-zzzz-", 0) is None
    assert complete("0 ", 0) is None and complete("000-a", 0) is None  # no room 0 (hypothesis found "0 ")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=260))
def test_completion_never_fails_and_completes_only_to_codes(text):
    complete = Completer()
    for state in range(3):
        got = complete(text, state)
        if got is None:
            break
        assert len(parse_code(got).words) >= 1  # every completion is a code of known words


# -- the default relay: xfer config ------------------------------------------------------


def test_config_sets_shows_and_unsets_the_default_relay(tmp_path):
    variables = {"XFER_CONFIG": str(tmp_path / "conf" / "config.json")}
    result = xfer(tmp_path, "config", variables=variables)
    assert result.status == 0 and result.stdout.startswith("relay: none set")
    result = xfer(tmp_path, "config", "relay", "wss://relay.example", variables=variables)
    assert result.status == 0 and "relay = wss://relay.example" in result.stdout
    assert json.loads((tmp_path / "conf" / "config.json").read_text()) == {"relay": "wss://relay.example"}
    result = xfer(tmp_path, "config", variables=variables)
    assert result.stdout.startswith(f"relay = wss://relay.example    (from {tmp_path / 'conf' / 'config.json'})")
    # XFER_RELAY comes before the file, and says so
    result = xfer(tmp_path, "config", variables={**variables, "XFER_RELAY": "ws://other:1"})
    assert result.stdout.startswith("relay = ws://other:1    (from XFER_RELAY)")
    result = xfer(tmp_path, "config", "relay", "--unset", variables=variables)
    assert result.status == 0 and json.loads((tmp_path / "conf" / "config.json").read_text()) == {}
    for args, fragment in (
        (["relay", "ftp://x"], "ws://"),
        (["relay"], "--unset"),
        (["relay", "ws://x:1", "--unset"], "not both"),
        (["colour", "red"], "no such setting: colour"),
    ):
        result = xfer(tmp_path, "config", *args, variables=variables)
        assert result.status == 2 and fragment in result.lines()[-1], (args, result.stderr)


def test_a_config_file_that_is_not_ours_is_a_clear_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("relay = 'x'")
    result = xfer(tmp_path, "send", "--text", "x", variables={"XFER_CONFIG": str(path)})
    assert result.status == 8 and result.lines() == [
        f"xfer: {path} is not xfer's config file (a JSON object); fix it or remove it"
    ]


def test_the_default_relay_carries_a_transfer_and_the_command_printed_is_the_code_alone(tmp_path, relay_process, procs):
    variables = {"XFER_CONFIG": str(tmp_path / "config.json")}
    assert xfer(tmp_path, "config", "relay", f"127.0.0.1:{relay_process.port}", variables=variables).status == 0
    src = make_file(tmp_path / "c.bin", 50_000, 9)
    sender = procs(["send", str(src), "--quiet"], tmp_path, "send", env=variables)
    import time

    deadline = time.monotonic() + bounded(15)
    while "Room" not in sender.stderr and time.monotonic() < deadline:
        time.sleep(0.05)
    match = re.search(r"Room (\S+)  xfer receive (\S+)$", sender.stderr.strip())
    assert match and match.group(1) == match.group(2), sender.stderr  # no --relay: the other side has its own
    result = xfer(tmp_path, "receive", match.group(1), "--yes", "--dir", str(tmp_path / "in"), variables=variables)
    assert result.status == 0, result.stderr
    assert sender.wait() == 0
    assert sha256_of(tmp_path / "in" / "c.bin") == sha256_of(src)


def test_config_path_is_in_the_platforms_config_folder():
    env = Environment.of(open("/dev/null"), open("/dev/null", "w"), open("/dev/null", "w"), {})
    path = config_path(env)
    assert path.name == "config.json" and path.parent.name == "xfer"
    assert choose_relay("ws://given:1", env).source == "--relay"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_in_the_config_file_read_or_fail_cleanly(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("conf") / "config.json"
    path.write_bytes(data)
    try:
        settings_read = read_config(path)
    except LocalFileError as exc:
        assert str(path) in str(exc)
    else:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in settings_read.items())


def test_the_word_list_is_what_the_completion_offers():
    assert Completer()("1-", 0) == f"1-{wordlist()[0]}"
