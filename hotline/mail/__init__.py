"""The e-mail channel and customer notifications.

- `parse`: raw messages → text, attachments, headers (never raises);
- `intake`: the support mailbox's messages → requests (idempotent by Message-ID);
- `compose`: the automatic reply and notifications, threaded and loop-safe;
- `outbox`: notifications owed to customers (e-mail or SMS), sent at least once;
- `transport`: IMAP, SMTP and Twilio SMS, with their errors translated;
- `service`: the background loops of `hotline serve` and `hotline mail`.
"""
