"""Every setting of the hotline, read from the environment in one place.

`load_settings()` reads the variables (and a `.env` file in the working directory,
if there is one, or the file HOTLINE_ENV_FILE names) into a frozen `Settings`. A
missing or malformed value raises `SettingsError` with one line that names the
variable, and so does a data dir that cannot be written for good (permissions, a
read-only file system, a file in the way): a configuration error that waiting does not
cure (exit status 78). A data dir whose file system fails for now (a stale NFS handle,
an I/O error, a mount that is not there yet) raises `Unavailable` instead (exit status
3: systemd tries again). Secrets have no defaults.
"""

from __future__ import annotations

import datetime as dt
import errno
import importlib.util
import os
import secrets
import socket
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hotline.errors import HotlineError, SettingsError, Unavailable
from hotline.phones import parse_phone  # the one parser of phone numbers

T = TypeVar("T")

SUPPORT_NUMBER = "+73435674530"
SUPPORT_EMAIL = "support@axon.system"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class BusinessHours:
    """Days of the week (0 = Monday) and a daily window in the plant's time zone."""

    weekdays: frozenset[int]
    start: dt.time
    end: dt.time
    timezone: ZoneInfo
    holidays: frozenset[dt.date] = frozenset()

    def is_open(self, moment: dt.datetime) -> bool:
        """True if `moment` (timezone-aware) falls inside business hours."""
        local = moment.astimezone(self.timezone)
        if local.date() in self.holidays or local.weekday() not in self.weekdays:
            return False
        return self.start <= local.time() < self.end


#: How long a request of each kind may wait for an engineer (HOTLINE_RESPONSE_TARGETS).
DEFAULT_RESPONSE_TARGETS: dict[str, dt.timedelta] = {
    "incident": dt.timedelta(hours=4),
    "problem": dt.timedelta(hours=24),
    "service_request": dt.timedelta(hours=72),
}


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    http_host: str
    http_port: int
    database_url: str
    public_url: str | None
    twilio_account_sid: str | None
    twilio_auth_token: str | None
    twilio_api_base: str
    twilio_insecure: bool
    twilio_voice: str
    prompts_mode: str
    agi_host: str
    agi_port: int
    ami_url: str | None
    vosk_model: Path
    queue_url: str | None
    secret_key: str
    support_number: str
    duty_number: str | None
    dial_timeout: int
    business_hours: BusinessHours
    record_max_seconds: int
    record_silence_seconds: int
    lookups_per_hour: int
    imap_url: str | None
    smtp_url: str | None
    mail_from: str
    mail_poll_seconds: int
    attachment_max_bytes: int
    sms_from: str | None
    # e-mail channel and customer notifications (hotline.mail)
    imap_processed_folder: str | None
    mail_allow_plaintext: bool
    outbox_seconds: int
    # --- the dashboard ---
    secure_cookies: bool
    trusted_proxies: int
    # Transcription (hotline.transcription.pipeline, hotline.jobs).
    asr_engine: str
    queue_name: str
    transcription_lease_seconds: int
    transcription_workers: int
    # Asterisk (FastAGI, AMI)
    agi_recordings_dir: Path
    agi_sounds_prefix: str
    ami_callback_context: str
    # FastAGI limits (ivr.asterisk.fastagi): calls at once, the restart drain, Asterisk's answers
    agi_max_sessions: int
    agi_processes: int  # 0: one per core, at most 4 (ivr.asterisk.service.agi_processes)
    agi_drain_seconds: int
    agi_answer_timeout: int
    # Speech on the line (hotline.transcription.live): AudioSocket listener, Twilio Media Streams.
    live_speech: bool
    audiosocket_host: str
    audiosocket_port: int
    # Intake robustness (hotline.calllog sweep, ivr.twilio.recordings, caller data)
    call_close_after_minutes: int
    recording_fetch_tries: int
    withheld_lookups_per_hour: int
    # Prompt audio (voice_models.prompt_audio): the RHVoice voice, when RHVoice is installed.
    prompt_voice: str = "anna"
    # False: HOTLINE_AMI_URL only enables call-backs here (queued for the one host with the
    # AMI listener, README "Scaling out"); `serve` keeps no AMI connection of its own.
    ami_listener: bool = True
    extra: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    # The dashboard: how long a request of each kind may wait for an engineer's answer.
    # (compare=False: a dict cannot be hashed, and settings are; the dashboard alone reads it.)
    response_targets: dict[str, dt.timedelta] = field(
        default_factory=lambda: dict(DEFAULT_RESPONSE_TARGETS), compare=False
    )

    @property
    def run_dir(self) -> Path:
        """This machine's runtime files (sockets, health flags): see `host_run_dir`."""
        return host_run_dir(self.data_dir)

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    @property
    def attachments_dir(self) -> Path:
        return self.data_dir / "attachments"


def host_name() -> str:
    """This machine's name as a folder name (letters, digits, '.', '-', '_'; at most 40)."""
    name = "".join(c if c.isalnum() or c in ".-_" else "_" for c in socket.gethostname())
    return name.strip(".")[:40] or "localhost"


def host_run_dir(data_dir: Path) -> Path:
    """`<data dir>/run/<host>`: files of the processes of this machine alone (the Twilio
    call-log writer's and the warm CLI helper's sockets, `/healthz` problems). The data dir
    may be shared by several hosts (README, "Scaling out"); these must not be: one host's
    start would unlink another's sockets and clear its problems. hotline.warmstart finds
    the same folder without importing this module."""
    return data_dir / "run" / host_name()


# --- parsers: each takes the raw string and raises ValueError with a reason ---


def _int(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("must be true or false")


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        parts = urlsplit(raw)
        if parts.scheme not in schemes or not (parts.netloc or parts.path):
            raise ValueError(f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}")
        return raw.rstrip("/") if parts.scheme in {"http", "https"} else raw

    return parse


#: The database URLs the hotline ships drivers for (SQLite in the standard library, psycopg 3).
_DATABASE_SCHEMES = {"sqlite", "sqlite+pysqlite", "postgresql", "postgres", "postgresql+psycopg"}


def _database_url(raw: str) -> str:
    if "://" not in raw:
        raise ValueError("must be an SQLAlchemy URL such as postgresql://user@host/db")
    scheme = raw.split("://", 1)[0].lower()
    if scheme not in _DATABASE_SCHEMES:
        raise ValueError("only sqlite:///path and postgresql://user:password@host/db are supported")
    if scheme in {"postgresql", "postgres"}:
        # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2.
        raw = "postgresql+psycopg://" + raw.split("://", 1)[1]
    return raw


def _e164(raw: str) -> str:
    phone = parse_phone(raw)
    if phone is None or not phone.is_number:
        raise ValueError("must be a phone number in E.164 form, such as +73435674530")
    return phone.stored


def _dial_target(raw: str) -> str:
    # Either an E.164 number (Twilio <Dial>) or an Asterisk dial string such as PJSIP/100.
    return raw if "/" in raw else _e164(raw)


def _hours(raw: str) -> tuple[frozenset[int], dt.time, dt.time]:
    """'mon-fri 09:00-18:00', 'mon,wed,fri 08:30-17:00'; '24:00' ends at midnight
    (`dt.time.max`): 'mon-sun 00:00-24:00' is round the clock."""
    try:
        days_part, time_part = raw.strip().lower().split()
        days: set[int] = set()
        for chunk in days_part.split(","):
            if "-" in chunk:
                first, last = chunk.split("-")
                days.update(range(WEEKDAYS.index(first), WEEKDAYS.index(last) + 1))
            else:
                days.add(WEEKDAYS.index(chunk))
        start_s, end_s = time_part.split("-")
        start = dt.time.fromisoformat(start_s)
        end = dt.time.max if end_s == "24:00" else dt.time.fromisoformat(end_s)
    except ValueError:
        raise ValueError("must look like 'mon-fri 09:00-18:00' (24:00 for midnight)") from None
    if start >= end or not days:
        raise ValueError("must name at least one day and a start before the end")
    return frozenset(days), start, end


# The product design says "Europe/Yekaterinburg"; the IANA name of the plant's zone is Asia/….
_ZONE_ALIASES = {"Europe/Yekaterinburg": "Asia/Yekaterinburg"}
PLANT_TIMEZONE = "Asia/Yekaterinburg"


def _timezone(raw: str) -> ZoneInfo:
    try:
        return ZoneInfo(_ZONE_ALIASES.get(raw, raw))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be an IANA time zone such as Asia/Yekaterinburg") from None


def _dates(raw: str) -> frozenset[dt.date]:
    try:
        return frozenset(dt.date.fromisoformat(d.strip()) for d in raw.split(",") if d.strip())
    except ValueError:
        raise ValueError("must be dates like 2026-01-01,2026-01-02") from None


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return raw

    return parse


def _sounds_prefix(raw: str) -> str:
    # A path Asterisk's STREAM FILE takes: relative to its sounds dir, or absolute.
    if any(c.isspace() or c in '"\\' for c in raw):
        raise ValueError("must be a path without spaces or quotes, such as hotline/ru")
    return raw.rstrip("/")


def _word(raw: str) -> str:
    if not all(c.isalnum() or c in "-_" for c in raw):
        raise ValueError("must be letters, digits, '-' or '_'")
    return raw


_SPAN_UNITS = {"m": 60, "h": 3600, "d": 86400}


def _response_targets(raw: str) -> dict[str, dt.timedelta]:
    """`incident=4h,problem=1d,service_request=72h` (m, h, d); kinds not named keep the default."""
    targets = dict(DEFAULT_RESPONSE_TARGETS)
    for item in raw.split(","):
        kind, _, span = item.strip().partition("=")
        kind, span = kind.strip(), span.strip().lower()
        if kind not in DEFAULT_RESPONSE_TARGETS:
            raise ValueError(f"kinds are {', '.join(DEFAULT_RESPONSE_TARGETS)}, not {kind!r}")
        if len(span) < 2 or span[-1] not in _SPAN_UNITS or not span[:-1].isdigit() or int(span[:-1]) == 0:
            raise ValueError(f"{kind}: give a time such as 30m, 4h or 2d, not {span!r}")
        targets[kind] = dt.timedelta(seconds=int(span[:-1]) * _SPAN_UNITS[span[-1]])
    return targets


class _Reader:
    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def get(self, name: str, parse: Callable[[str], T], default: T) -> T:
        raw = self.env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except (ValueError, TypeError) as exc:
            raise SettingsError(f"{name}={raw!r} is not valid: {exc}") from None

    def optional(self, name: str, parse: Callable[[str], T] = str) -> T | None:  # type: ignore[assignment]
        return self.get(name, parse, None)


def _secret_key(data_dir: Path, configured: str | None) -> str:
    """The Flask session key: configured, else made once and kept in the data dir."""
    if configured:
        return configured
    path = data_dir / "secret_key"
    try:
        if path.exists():
            return path.read_text().strip()
        data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.touch(mode=0o600)
        path.write_text(key)
    except OSError as exc:  # made by another user (root): the service cannot read it
        raise file_error(
            exc,
            f"cannot use the session key {path}: {exc.strerror or exc}; it must belong to the user "
            "the hotline runs as (chown it, or run hotline commands as that user)",
        ) from None
    return key


#: Errors of a file operation that a person must fix (an owner, a mode, a read-only
#: mount, a file where a folder should be): waiting does not cure them. Any other
#: (ESTALE of NFS, EIO, ENOENT of a mount not there yet, ENOSPC) may pass by itself.
CONFIGURATION_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOTDIR,
        errno.EEXIST,
        errno.EISDIR,
        errno.ELOOP,
        errno.ENAMETOOLONG,
    }
)


def file_error(exc: OSError, message: str) -> HotlineError:
    """SettingsError (exit 78) with `message` if `exc` is one a person must fix, else
    Unavailable (exit 3, systemd tries again)."""
    if exc.errno in CONFIGURATION_ERRNOS:
        return SettingsError(message)
    return Unavailable(f"{message} (a file system error that may pass: tried again)")


def check_data_dir(data_dir: Path) -> None:
    """SettingsError with one line unless `data_dir` is (or can be made) a folder to write
    in; Unavailable if its file system fails for now (see `file_error`).

    A real write, not os.access(): root passes every permission check, not a read-only
    file system or an immutable folder."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".writable-", dir=data_dir)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, FileExistsError | NotADirectoryError):
            reason = "a file is in the way (a path under a file, or the path is a file)"
        raise file_error(exc, f"HOTLINE_DATA_DIR {data_dir} is not a writable folder: {reason}") from None


DEFAULT_VOSK_MODEL = "vosk-model-small-ru-0.22"


def default_model_path() -> Path:
    """Where the catalogue's default model is unpacked: `voice_models/models/<name>`.

    Found by location, not imported: the domain does not depend on `voice_models`.
    """
    spec = importlib.util.find_spec("voice_models")
    root = Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else Path()
    return root / "models" / DEFAULT_VOSK_MODEL


def _env_file(named: str | None) -> dict[str, str]:
    """The variables of HOTLINE_ENV_FILE (e.g. the service's /etc/hotline/hotline.env, so
    that commands an operator runs see what the service sees), else of ./.env if present."""
    from dotenv import dotenv_values

    if named:
        try:
            with open(named, encoding="utf-8") as f:
                values = dotenv_values(stream=f)
        except OSError as exc:
            raise SettingsError(f"HOTLINE_ENV_FILE={named!r} cannot be read: {exc.strerror or exc}") from None
    else:
        values = dotenv_values(".env")
    return {k: v for k, v in values.items() if v is not None}


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read every setting from `env` (default: the process environment and `.env`)."""
    if env is None:
        env = {**_env_file(os.environ.get("HOTLINE_ENV_FILE")), **os.environ}
    r = _Reader(env)
    data_dir = Path(r.get("HOTLINE_DATA_DIR", str, "./var")).resolve()
    days, start, end = r.get("HOTLINE_BUSINESS_HOURS", _hours, _hours("mon-fri 09:00-18:00"))
    hours = BusinessHours(
        weekdays=days,
        start=start,
        end=end,
        timezone=r.get("HOTLINE_TIMEZONE", _timezone, ZoneInfo(PLANT_TIMEZONE)),
        holidays=r.get("HOTLINE_HOLIDAYS", _dates, frozenset()),
    )
    values: dict[str, Any] = dict(
        data_dir=data_dir,
        http_host=r.get("HOTLINE_HTTP_HOST", str, "127.0.0.1"),
        http_port=r.get("HOTLINE_HTTP_PORT", _int(1, 65535), 8000),
        database_url=r.get(
            "HOTLINE_DATABASE_URL", _database_url, f"sqlite:///{data_dir / 'hotline.sqlite3'}"
        ),
        public_url=r.optional("HOTLINE_PUBLIC_URL", _url("http", "https")),
        twilio_account_sid=r.optional("TWILIO_ACCOUNT_SID"),
        twilio_auth_token=r.optional("TWILIO_AUTH_TOKEN"),
        twilio_api_base=r.get("HOTLINE_TWILIO_API_BASE", _url("http", "https"), "https://api.twilio.com"),
        twilio_insecure=r.get("HOTLINE_TWILIO_INSECURE_DEV", _bool, False),
        twilio_voice=r.get("HOTLINE_TWILIO_VOICE", str, "Polly.Tatyana"),
        prompts_mode=r.get("HOTLINE_PROMPTS", _choice("say", "play"), "say"),
        agi_host=r.get("HOTLINE_AGI_HOST", str, "127.0.0.1"),
        agi_port=r.get("HOTLINE_AGI_PORT", _int(0, 65535), 4573),
        ami_url=r.optional("HOTLINE_AMI_URL", _url("ami")),
        vosk_model=r.get("HOTLINE_VOSK_MODEL", lambda s: Path(s).resolve(), None) or default_model_path(),
        queue_url=r.optional("HOTLINE_QUEUE_URL", _url("redis", "rediss", "unix")),
        secret_key="",
        support_number=r.get("HOTLINE_SUPPORT_NUMBER", _e164, SUPPORT_NUMBER),
        duty_number=r.optional("HOTLINE_DUTY_NUMBER", _dial_target),
        dial_timeout=r.get("HOTLINE_DIAL_TIMEOUT", _int(5, 120), 20),
        business_hours=hours,
        record_max_seconds=r.get("HOTLINE_RECORD_MAX_SECONDS", _int(10, 3600), 180),
        record_silence_seconds=r.get("HOTLINE_RECORD_SILENCE_SECONDS", _int(1, 60), 5),
        lookups_per_hour=r.get("HOTLINE_LOOKUPS_PER_HOUR", _int(1, 10000), 20),
        imap_url=r.optional("HOTLINE_IMAP_URL", _url("imap", "imaps")),
        smtp_url=r.optional("HOTLINE_SMTP_URL", _url("smtp", "smtps")),
        mail_from=r.get("HOTLINE_MAIL_FROM", str, SUPPORT_EMAIL),
        mail_poll_seconds=r.get("HOTLINE_MAIL_POLL_SECONDS", _int(1, 3600), 30),
        attachment_max_bytes=r.get("HOTLINE_ATTACHMENT_MAX_BYTES", _int(1024, 1 << 31), 25 * 1024 * 1024),
        sms_from=r.optional("HOTLINE_SMS_FROM", _e164),
        # e-mail channel and customer notifications (hotline.mail)
        imap_processed_folder=r.optional("HOTLINE_IMAP_PROCESSED_FOLDER"),
        mail_allow_plaintext=r.get("HOTLINE_MAIL_ALLOW_PLAINTEXT", _bool, False),
        outbox_seconds=r.get("HOTLINE_OUTBOX_SECONDS", _int(1, 3600), 10),
        # --- the dashboard ---
        secure_cookies=r.get("HOTLINE_SECURE_COOKIES", _bool, None),
        trusted_proxies=r.get("HOTLINE_TRUSTED_PROXIES", _int(0, 5), 0),
        # Transcription: "fake" is the demo recognizer (no model needed).
        asr_engine=r.get("HOTLINE_ASR", _choice("vosk", "fake"), "vosk"),
        queue_name=r.get("HOTLINE_QUEUE_NAME", str, "hotline"),
        transcription_lease_seconds=r.get("HOTLINE_TRANSCRIPTION_LEASE_SECONDS", _int(0, 86400), 900),
        transcription_workers=r.get("HOTLINE_TRANSCRIPTION_WORKERS", _int(0, 64), 1),
        # Asterisk (FastAGI, AMI)
        agi_recordings_dir=r.get(
            "HOTLINE_AGI_RECORDINGS_DIR", lambda s: Path(s).resolve(), data_dir / "asterisk"
        ),
        agi_sounds_prefix=r.get("HOTLINE_AGI_SOUNDS_PREFIX", _sounds_prefix, "hotline/ru"),
        ami_callback_context=r.get("HOTLINE_AMI_CALLBACK_CONTEXT", _word, "hotline-callback"),
        prompt_voice=r.get("HOTLINE_PROMPT_VOICE", _word, "anna"),
        ami_listener=r.get("HOTLINE_AMI_LISTENER", _bool, True),
        agi_max_sessions=r.get("HOTLINE_AGI_MAX_SESSIONS", _int(1, 10000), 500),
        agi_processes=r.get("HOTLINE_AGI_PROCESSES", _int(0, 64), 0),
        agi_drain_seconds=r.get("HOTLINE_AGI_DRAIN_SECONDS", _int(0, 3600), 20),
        agi_answer_timeout=r.get("HOTLINE_AGI_ANSWER_TIMEOUT", _int(5, 3600), 60),
        # Speech on the line (hotline.transcription.live)
        live_speech=r.get("HOTLINE_LIVE_SPEECH", _bool, False),
        audiosocket_host=r.get("HOTLINE_AUDIOSOCKET_HOST", str, "127.0.0.1"),
        audiosocket_port=r.get("HOTLINE_AUDIOSOCKET_PORT", _int(0, 65535), 4574),
        response_targets=r.get("HOTLINE_RESPONSE_TARGETS", _response_targets, dict(DEFAULT_RESPONSE_TARGETS)),
        # Intake robustness: calls whose end never came are closed after this long;
        # a recording is fetched this many times (with backoff) before it is shown as lost;
        # status read-back to withheld numbers, all of them together, per hour.
        call_close_after_minutes=r.get("HOTLINE_CALL_CLOSE_AFTER_MINUTES", _int(5, 10080), 240),
        recording_fetch_tries=r.get("HOTLINE_RECORDING_FETCH_TRIES", _int(1, 100), 8),
        withheld_lookups_per_hour=r.get("HOTLINE_WITHHELD_LOOKUPS_PER_HOUR", _int(1, 100000), 60),
    )
    values.update(overrides)
    check_data_dir(values["data_dir"])
    if values["secure_cookies"] is None:
        # Cookies only over HTTPS when the service is reached over HTTPS.
        values["secure_cookies"] = (values["public_url"] or "").startswith("https://")
    if not values["secret_key"]:
        values["secret_key"] = _secret_key(values["data_dir"], r.optional("HOTLINE_SECRET_KEY"))
    return Settings(**values)
