"""The AGI protocol functions, table-driven, malformed lines included."""

from __future__ import annotations

import pytest

from ivr.asterisk.agi import (
    AgiCommandError,
    AgiProtocolError,
    ChannelGone,
    Playback,
    Reply,
    ReplyReader,
    channel_alive,
    clip,
    command,
    digit_of,
    digits_of,
    parse_env_line,
    parse_environment,
    parse_reply,
    playback_of,
    quote,
    record_outcome,
    variable_of,
)

ENV = """agi_network: yes
agi_network_script: hotline
agi_request: agi://hotline-host:4573/hotline
agi_channel: PJSIP/trunk-00000012
agi_language: ru
agi_type: PJSIP
agi_uniqueid: 1700000000.42
agi_version: 22.1.0
agi_callerid: 79001234567
agi_calleridname: unknown
agi_callingpres: 0
agi_dnid: 3435674530
agi_rdnis: unknown
agi_context: from-trunk
agi_extension: 73435674530
agi_priority: 2
agi_enhanced: 0.0
agi_accountcode:
agi_threadid: 140245
agi_arg_1: 1700000000.41
agi_arg_2: with space"""


def test_environment_block() -> None:
    env = parse_environment(ENV.splitlines())
    assert env.uniqueid == "1700000000.42"
    assert env.network_script == "hotline"
    assert env.callerid == "79001234567"
    assert env.calleridname is None
    assert env.extension == "73435674530"
    assert env.channel == "PJSIP/trunk-00000012"
    assert env.args == ["1700000000.41", "with space"]
    assert env.get("accountcode") == ""


@pytest.mark.parametrize(
    ("callerid", "expected"),
    [("unknown", None), ("", None), ("Anonymous", None), ("+79001234567", "+79001234567")],
)
def test_withheld_caller(callerid: str, expected: str | None) -> None:
    env = parse_environment(["agi_uniqueid: 1.1", f"agi_callerid: {callerid}"])
    assert env.callerid == expected


@pytest.mark.parametrize(
    "line",
    ["hello", "agi_uniqueid 1.2", "AGI_UNIQUEID: 1", "200 result=0", "agi_x:novalue-space", "GET / HTTP/1.1"],
)
def test_malformed_environment_line(line: str) -> None:
    with pytest.raises(AgiProtocolError):
        parse_env_line(line)


def test_environment_without_uniqueid() -> None:
    with pytest.raises(AgiProtocolError, match="agi_uniqueid"):
        parse_environment(["agi_channel: PJSIP/x"])


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("200 result=0", Reply("0")),
        ("200 result=1 (PJSIP/101-00000001)", Reply("1", "PJSIP/101-00000001")),
        ("200 result=1 (a (b) c)", Reply("1", "a (b) c")),
        ("200 result=0 endpos=12345", Reply("0", None, 12345)),
        ("200 result=35 (dtmf) endpos=8000", Reply("35", "dtmf", 8000)),
        ("200 result=-1 (hangup) endpos=24000", Reply("-1", "hangup", 24000)),
        ("200 result=2412 (timeout) endpos=160000", Reply("2412", "timeout", 160000)),
        ("200 result= (timeout)", Reply("", "timeout")),
        ("200 result=123 (timeout)\r\n", Reply("123", "timeout")),
        ("200 result=", Reply("")),
    ],
)
def test_reply_lines(line: str, reply: Reply) -> None:
    assert parse_reply(line) == reply


@pytest.mark.parametrize(
    "line", ["200 result", "200 res=1", "200 result=1 extra", "200 result=1 (open", "200 result=1 endpos=x"]
)
def test_malformed_reply(line: str) -> None:
    with pytest.raises(AgiProtocolError):
        parse_reply(line)


def feed(lines: list[str]) -> tuple[Reply | None, ReplyReader]:
    reader = ReplyReader()
    reply = None
    for line in lines:
        reply = reader.feed(line)
    return reply, reader


def test_hangup_line_before_the_answer() -> None:
    reply, reader = feed(["HANGUP", "200 result=-1 endpos=0"])
    assert reply == Reply("-1", None, 0)
    assert reader.hung_up


@pytest.mark.parametrize(
    ("lines", "error", "code"),
    [
        (["511 Command Not Permitted on a dead channel or intercept routine"], ChannelGone, None),
        (["HANGUP", "511 Command Not Permitted on a dead channel"], ChannelGone, None),
        (["510 Invalid or unknown command"], AgiCommandError, 510),
        (
            [
                "520-Invalid command syntax.  Proper usage follows:",
                " Usage: STREAM FILE <filename> <escape_digits> [<sample offset>]",
                "   Send the given file.",
                "520 End of proper usage.",
            ],
            AgiCommandError,
            520,
        ),
        (["520 Invalid command syntax."], AgiCommandError, 520),
        (["garbage"], AgiProtocolError, None),
        (["999 what"], AgiProtocolError, None),
        (["200 result=x y"], AgiProtocolError, None),
    ],
)
def test_error_answers(lines: list[str], error: type[Exception], code: int | None) -> None:
    with pytest.raises(error) as raised:
        feed(lines)
    if code is not None:
        assert raised.value.code == code  # type: ignore[attr-defined]


def test_usage_block_is_kept_whole() -> None:
    reader = ReplyReader()
    assert reader.feed("520-Invalid command syntax.  Proper usage follows:") is None
    assert reader.feed(" Usage: X") is None
    with pytest.raises(AgiCommandError, match="Usage: X"):
        reader.feed("520 End of proper usage.")
    assert reader.feed("200 result=0") == Reply("0")  # the reader is usable again


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("200 result=0 endpos=100", None),
        ("200 result=49 endpos=5", "1"),
        ("200 result=35", "#"),
        ("200 result=42", "*"),
        ("200 result=", None),
        ("200 result=0", None),
    ],
)
def test_digit_results(line: str, key: str | None) -> None:
    assert digit_of(parse_reply(line)) == key


@pytest.mark.parametrize("line", ["200 result=-1 endpos=0", "200 result=-1"])
def test_digit_hangup(line: str) -> None:
    with pytest.raises(ChannelGone):
        digit_of(parse_reply(line))


@pytest.mark.parametrize("line", ["200 result=65", "200 result=abc"])
def test_digit_garbage(line: str) -> None:
    with pytest.raises(AgiProtocolError):
        digit_of(parse_reply(line))


@pytest.mark.parametrize(
    ("line", "digits"),
    [
        ("200 result=12345", "12345"),
        ("200 result= (timeout)", ""),
        ("200 result=12 (timeout)", "12"),
        ("200 result=0", "0"),
        ("200 result=", ""),
    ],
)
def test_get_data_results(line: str, digits: str) -> None:
    assert digits_of(parse_reply(line)) == digits


def test_get_data_hangup_and_garbage() -> None:
    with pytest.raises(ChannelGone):
        digits_of(parse_reply("200 result=-1"))
    with pytest.raises(AgiProtocolError):
        digits_of(parse_reply("200 result=12a4"))


@pytest.mark.parametrize(
    ("line", "how", "key"),
    [
        ("200 result=35 (dtmf) endpos=48000", "dtmf", "#"),
        ("200 result=0 (timeout) endpos=1440000", "timeout", None),
        # silence cut-off: result is the milliseconds left, 35 is NOT '#'
        ("200 result=35 (timeout) endpos=80000", "timeout", None),
        ("200 result=-1 (hangup) endpos=24000", "hangup", None),
        ("200 result=-1 endpos=0", "hangup", None),
        # the observed lines of Asterisk 22 (FIELD-NOTES "Asterisk 22 as observed")
        ("200 result=35 (dtmf) endpos=52844", "dtmf", "#"),
        ("200 result=169070 (timeout) endpos=55476", "timeout", None),
        ("200 result=-1 (hangup) endpos=35178", "hangup", None),
        ("200 result=-1 (writefile)", "unwritable", None),
        ("200 result=-1 (randomerror) endpos=0", "beep_failed", None),
        ("200 result=35 (randomerror) endpos=0", "beep_key", None),
        ("200 result=-1 (waitfor) endpos=0", "error", None),
    ],
)
def test_record_results(line: str, how: str, key: str | None) -> None:
    outcome = record_outcome(parse_reply(line))
    assert (outcome.how, outcome.key) == (how, key)


def test_record_endpos_kept() -> None:
    assert record_outcome(parse_reply("200 result=-1 (hangup) endpos=24000")).endpos == 24000


@pytest.mark.parametrize(
    ("line", "value"),
    [("200 result=1 (ANSWER)", "ANSWER"), ("200 result=0", None), ("200 result=1 ()", "")],
)
def test_variables(line: str, value: str | None) -> None:
    assert variable_of(parse_reply(line)) == value


@pytest.mark.parametrize(
    ("arg", "quoted"),
    [
        ("hotline/ru/greeting", "hotline/ru/greeting"),
        ("", '""'),
        ("0123456789*#", "0123456789*#"),
        ("PJSIP/101,20", "PJSIP/101,20"),
        ("a b", '"a b"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        (180000, "180000"),
    ],
)
def test_quote(arg: str | int, quoted: str) -> None:
    assert quote(arg) == quoted


@pytest.mark.parametrize("arg", ["a\nHANGUP", "x\r", "nul\0"])
def test_quote_refuses_line_breaks(arg: str) -> None:
    with pytest.raises(ValueError):
        quote(arg)


def test_command_line() -> None:
    assert command("RECORD FILE", "/r/1.2-x", "wav", "#", 180000, "BEEP", "s=5") == (
        "RECORD FILE /r/1.2-x wav # 180000 BEEP s=5\n"
    )
    assert command("STREAM FILE", "hotline/ru/menu", "") == 'STREAM FILE hotline/ru/menu ""\n'


@pytest.mark.parametrize(
    ("line", "key", "failed"),
    [
        ("200 result=0 endpos=51622", None, False),  # played to the end
        ("200 result=49 endpos=6400", "1", False),  # interrupted by a digit
        # a missing file and a hang-up give the same line: the caller must look further
        ("200 result=-1 endpos=0", None, True),
    ],
)
def test_playback_results(line: str, key: str | None, failed: bool) -> None:
    assert playback_of(parse_reply(line)) == Playback(key=key, failed=failed)


def test_channel_status() -> None:
    assert channel_alive(parse_reply("200 result=6"))
    assert not channel_alive(parse_reply("200 result=-1"))
    with pytest.raises(ChannelGone):  # what a dead channel answers
        ReplyReader().feed("511 Command Not Permitted on a dead channel or intercept routine")


@pytest.mark.parametrize(
    "uniqueid", ["1700000000.42", "1764423000.1234567", "pbx1-1700000000.42", "pbx_east-1.2"]
)
def test_uniqueids_asterisk_makes(uniqueid: str) -> None:
    env = parse_environment([f"agi_uniqueid: {uniqueid}"])
    assert env.uniqueid == uniqueid


@pytest.mark.parametrize(
    "uniqueid",
    [
        "../../x/secret",
        "1700000000.42/../../etc",
        "/etc/passwd",
        "..",
        "1700000000",
        "1700000000.42 ",
        "1700000000.42\x00",
        "a" * 41 + "-1.2",
        "1" * 21 + ".1",
        ".hidden-1.2",
    ],
)
def test_uniqueids_that_could_name_other_files_are_refused(uniqueid: str) -> None:
    with pytest.raises(AgiProtocolError, match="agi_uniqueid"):
        parse_environment([f"agi_uniqueid: {uniqueid}"])


def test_environment_is_bounded() -> None:
    with pytest.raises(AgiProtocolError, match="too big"):
        parse_environment(["agi_uniqueid: 1.2", *(f"agi_arg_{n}: x" for n in range(1, 300))])
    with pytest.raises(AgiProtocolError, match="too big"):
        parse_environment(["agi_uniqueid: 1.2", "agi_callerid: " + "7" * 70000])


def test_usage_block_is_bounded() -> None:
    reader = ReplyReader()
    assert reader.feed("520-Invalid command syntax.  Proper usage follows:") is None
    with pytest.raises(AgiProtocolError, match="usage block"):
        for _ in range(10_000):  # bounded: the reader gives up long before
            reader.feed(" Usage: " + "x" * 100)


def test_usage_text_is_cut_in_the_error() -> None:
    reader = ReplyReader()
    reader.feed("520-Invalid command syntax.  Proper usage follows:")
    for _ in range(50):
        reader.feed(" Usage: " + "y" * 100)
    with pytest.raises(AgiCommandError) as raised:
        reader.feed("520 End of proper usage.")
    assert len(str(raised.value)) <= 210


def test_clip() -> None:
    assert clip("short") == "short"
    assert clip("a\nb\x00c") == "a b c"
    long = clip("z" * 10_000)
    assert len(long) == 200 and long.endswith("…")


def test_caller_ids_are_cut_to_what_the_call_log_holds() -> None:
    env = parse_environment(["agi_uniqueid: 1.2", "agi_callerid: " + "7" * 5000, "agi_calleridname: a\x07b"])
    assert env.callerid == "7" * 40
    assert env.calleridname == "ab"
