"""One database session per HTTP request, closed when the request ends."""

from __future__ import annotations

from flask import current_app, g
from sqlalchemy.orm import Session

from hotline.db import Database
from hotline.settings import Settings


def session() -> Session:
    """This request's session (made on first use). Views that write call .commit()."""
    if "db_session" not in g:
        database: Database = current_app.extensions["hotline.db"]
        g.db_session = Session(database.engine, expire_on_commit=False)
    return g.db_session  # type: ignore[no-any-return]


def settings() -> Settings:
    """The application's settings."""
    return current_app.extensions["hotline.settings"]  # type: ignore[no-any-return]


def close_session(exc: BaseException | None) -> None:
    """Close the request's session; what a view did not commit is rolled back."""
    s: Session | None = g.pop("db_session", None)
    if s is not None:
        s.close()
