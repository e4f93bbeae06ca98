"""Recordings and attachments, by attachment id only; audio answers range requests for seeking."""

from __future__ import annotations

from flask import Blueprint, abort, send_file
from werkzeug.wrappers import Response

from hotline.errors import StorageError
from hotline.models import Attachment
from hotline.storage import resolve
from web.auth import require_login
from web.db import session, settings

bp = Blueprint("files", __name__, url_prefix="/files")
require_login(bp)

# Shown in the browser; everything else (HTML packets, SVG, logs) is downloaded, so a
# customer's file can never run script in the dashboard's origin.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


@bp.get("/<int:attachment_id>")
def download(attachment_id: int) -> Response:
    attachment = session().get(Attachment, attachment_id)
    if attachment is None:
        abort(404)
    try:
        path = resolve(settings().data_dir, attachment.path)
    except StorageError:
        abort(404)
    if not path.is_file():
        abort(404)
    inline = attachment.is_audio or attachment.content_type in INLINE_TYPES
    response = send_file(
        path,
        mimetype=attachment.content_type if inline else "application/octet-stream",
        as_attachment=not inline,
        download_name=attachment.filename,
        conditional=True,  # Range and If-None-Match: the player seeks without downloading it all
        etag=attachment.sha256,
        max_age=0,
    )
    response.headers["Cache-Control"] = "private, no-cache"
    # Opened by itself, a recording is the browser's own player page, which loads the file
    # again as media: that load is allowed, with the session cookie (a bare `sandbox` makes
    # the page another site, sent no SameSite cookie). No script either way.
    locked = "media-src 'self'; sandbox allow-same-origin" if attachment.is_audio else "sandbox"
    response.headers["Content-Security-Policy"] = f"default-src 'none'; {locked}"
    return response
