"""Inputs that could not be taken in, kept for an engineer instead of retried for ever.

An input that fails for a reason other than the database being down (a bug, a value
no cleaning made storable) is tried again at the next turn, up to MAX_TRIES times,
counted in a `DeadLetter` row keyed by the input's hash. Then it is 'dead': its raw
bytes are kept in the data dir (dead-letters/), the dashboard's intake page lists it,
and its source stops offering it (the mailbox marks the message done).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from hotline.cleaning import clean_line
from hotline.db import Database
from hotline.models import DeadLetter, utcnow
from hotline.storage import write_file

log = logging.getLogger(__name__)

MAX_TRIES = 3


def ref_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def record_failure(
    db: Database, data_dir: Path, source: str, raw: bytes, summary: str, error: BaseException | str
) -> bool:
    """Count one failed try of an input; True when it is now dead (stop offering it)."""
    ref = ref_of(raw)
    text = clean_line(error if isinstance(error, str) else f"{type(error).__name__}: {error}", 2000)
    for _ in range(2):  # a second process may make the row at the same time
        try:
            with db.session() as session:
                row = session.scalars(select(DeadLetter).where(DeadLetter.ref == ref)).one_or_none()
                if row is None:
                    row = DeadLetter(
                        source=source,
                        ref=ref,
                        summary=clean_line(summary, 300),
                        attempts=0,
                        state="retrying",
                        first_seen_at=utcnow(),
                    )
                    session.add(row)
                row.attempts += 1
                row.error = text
                row.last_seen_at = utcnow()
                if row.attempts >= MAX_TRIES and row.state != "dead":
                    row.path, _, _ = write_file(data_dir, "dead-letters", f"{source}-{ref[:16]}.raw", raw)
                    row.state = "dead"
                    log.error("%s input %s given up after %s tries: %s", source, ref[:16], row.attempts, text)
                return row.state == "dead"
        except IntegrityError:
            continue
    return False


def is_dead(db: Database, raw: bytes) -> bool:
    """True if this input was given up already (its source may offer it again)."""
    with db.session() as session:
        state = session.scalar(select(DeadLetter.state).where(DeadLetter.ref == ref_of(raw)))
        return state == "dead"


def mark_taken(db: Database, raw: bytes) -> None:
    """An input that failed before was taken in at a later try."""
    with db.session() as session:
        row = session.scalars(select(DeadLetter).where(DeadLetter.ref == ref_of(raw))).one_or_none()
        if row is not None and row.state == "retrying":
            row.state = "done"
