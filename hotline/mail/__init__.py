"""The e-mail channel: the support mailbox in, letters out (sent by hotline.notify).

- `parse`: raw messages → text, attachments, headers (never raises);
- `intake`: the support mailbox's messages → requests (idempotent by Message-ID);
- `compose`: the automatic reply and notifications, threaded and loop-safe;
- `transport`: IMAP and SMTP, with their errors translated;
- `service`: the background loops of `hotline serve` and `hotline mail`.
"""
