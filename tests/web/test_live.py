"""The partial transcript of a call in progress on the call page, and as JSON."""

from __future__ import annotations

from hotline import calllog
from hotline.transcription import live_store
from hotline.transcription.recognizer import Recognition


def test_a_call_in_progress_shows_what_is_being_said(engineer, app):
    db = app.extensions["hotline.db"]
    with db.session() as s:
        call_id = calllog.start_call(
            s, backend="asterisk", backend_call_id="1700000000.9", from_number="+79001234567"
        ).id
    live_store.open_live(db, stream_key="asterisk:u:1", backend="asterisk", call_id="1700000000.9")
    live_store.update_partial(db, "asterisk:u:1", "сканер на линии три не читает")

    data = engineer.get(f"/calls/{call_id}/live").get_json()
    assert data["ended"] is False
    assert [(t["state"], t["text"]) for t in data["transcripts"]] == [
        ("open", "сканер на линии три не читает")
    ]
    assert "сканер на линии три не читает" in engineer.get(f"/calls/{call_id}").get_data(as_text=True)

    live_store.finish_live(
        db, "asterisk:u:1", Recognition("сканер на линии три не читает коды"), complete=True
    )
    live_store.update_partial(db, "asterisk:u:1", "поздно")  # a finished transcript no longer changes
    data = engineer.get(f"/calls/{call_id}/live").get_json()
    assert [(t["state"], t["text"]) for t in data["transcripts"]] == [
        ("complete", "сканер на линии три не читает коды")
    ]

    assert engineer.get("/calls/999999/live").status_code == 404
    assert app.test_client().get(f"/calls/{call_id}/live").status_code in (302, 401)  # engineers only
