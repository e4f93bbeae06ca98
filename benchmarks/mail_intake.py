"""How fast the e-mail channel takes a backlog in: parsing, and parsing + filing into SQLite.

Run: .venv/bin/python benchmarks/mail_intake.py [messages]
Prints messages per second for parse_message() alone and for ingest() (parse, request,
attachment file, history, commit) on the embedded SQLite database.
"""

from __future__ import annotations

import sys
import tempfile
import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from hotline.db import Database
from hotline.mail.intake import ingest
from hotline.mail.parse import parse_message
from hotline.settings import load_settings


def sample(i: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Оператор {i} <op{i}@plant.example>"
    msg["To"] = "support@axon.system"
    msg["Subject"] = f"Сканер на линии {i % 7} не читает коды"
    msg["Message-ID"] = make_msgid(domain="plant.example")
    msg.set_content("Добрый день!\n\nС утра сканер не читает QR коды.\n" * 20)
    msg.add_alternative("<html><body><p>Добрый день!</p><script>x()</script></body></html>", subtype="html")
    msg.add_attachment(
        b"2026-11-24 ERROR camera\n" * 2000, maintype="text", subtype="plain", filename="app.log"
    )
    return msg.as_bytes()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    messages = [sample(i) for i in range(n)]
    start = time.perf_counter()
    for raw in messages:
        parse_message(raw)
    parse_rate = n / (time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings({"HOTLINE_DATA_DIR": tmp, "HOTLINE_SECRET_KEY": "bench"})
        db = Database(settings.database_url)
        db.upgrade()
        start = time.perf_counter()
        for raw in messages:
            ingest(settings, db, raw)
        ingest_rate = n / (time.perf_counter() - start)
        db.dispose()
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    print(f"messages: {n}, {len(messages[0]) // 1024} KiB each")
    print(f"parse_message: {parse_rate:.0f} messages/s")
    print(f"ingest (SQLite, files fsynced): {ingest_rate:.0f} messages/s; data dir {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
