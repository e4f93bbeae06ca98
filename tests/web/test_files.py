"""Recordings and attachments: by id only, inside the data dir, with range requests."""

from __future__ import annotations

from hotline import storage
from hotline.models import Attachment


def test_recording_is_served_with_range_requests(engineer, voicemail):
    with engineer.get(f"/files/{voicemail.attachment_id}") as whole:
        assert whole.status_code == 200
        assert whole.data == voicemail.audio
        assert whole.headers["Content-Type"] == "audio/wav"
        assert whole.headers["Accept-Ranges"] == "bytes"
        assert whole.headers["Content-Disposition"].startswith("inline")
    with engineer.get(f"/files/{voicemail.attachment_id}", headers={"Range": "bytes=1000-1999"}) as part:
        assert part.status_code == 206
        assert part.data == voicemail.audio[1000:2000]
        assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(voicemail.audio)}"
    with engineer.get(f"/files/{voicemail.attachment_id}", headers={"Range": "bytes=-100"}) as tail:
        assert tail.status_code == 206 and tail.data == voicemail.audio[-100:]
    with engineer.get(
        f"/files/{voicemail.attachment_id}", headers={"Range": f"bytes={len(voicemail.audio) + 10}-"}
    ) as bad:
        assert bad.status_code == 416


def test_other_files_are_downloaded_never_rendered(engineer, app, settings, voicemail):
    with app.extensions["hotline.db"].session() as s:
        att = storage.store_attachment(
            s,
            settings.data_dir,
            source=b"<script>alert(1)</script>",
            filename="packet.html",
            content_type="text/html",
            origin="email",
            request_id=voicemail.request_id,
        )
        att_id = att.id
    with engineer.get(f"/files/{att_id}") as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert response.headers["Content-Disposition"].startswith("attachment")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in response.headers["Content-Security-Policy"]
    page = engineer.get(f"/requests/{voicemail.number}").get_data(as_text=True)
    assert f'href="/files/{att_id}">packet.html</a>' in page


def test_paths_never_leave_the_data_dir(engineer, app, settings, tmp_path, voicemail):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    with app.extensions["hotline.db"].session() as s:
        evil = Attachment(
            path="../secret.txt",
            filename="secret.txt",
            content_type="text/plain",
            size=10,
            sha256="0" * 64,
            source="web",
            request_id=voicemail.request_id,
        )
        absolute = Attachment(
            path=str(secret),
            filename="secret.txt",
            content_type="text/plain",
            size=10,
            sha256="1" * 64,
            source="web",
            request_id=voicemail.request_id,
        )
        s.add_all([evil, absolute])
        s.flush()
        ids = [evil.id, absolute.id]
    for att_id in ids:
        response = engineer.get(f"/files/{att_id}")
        assert response.status_code == 404 and b"top secret" not in response.data
    for url in [
        "/files/../../etc/passwd",
        "/files/..%2F..%2Fetc%2Fpasswd",
        "/files/%2Fetc%2Fpasswd",
        "/files/1?path=../../etc/passwd",
        "/static/../../../etc/passwd",
        "/files/-1",
    ]:
        response = engineer.get(url)
        assert b"root:" not in response.data, url
        if not url.startswith("/files/1?"):
            assert response.status_code == 404, url
        response.close()


def test_missing_file_on_disk_is_404(engineer, app, settings, voicemail):
    with app.extensions["hotline.db"].session() as s:
        path = storage.resolve(settings.data_dir, s.get(Attachment, voicemail.attachment_id).path)
    path.unlink()
    assert engineer.get(f"/files/{voicemail.attachment_id}").status_code == 404
    assert engineer.get("/files/999").status_code == 404
