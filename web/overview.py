"""The overview: how busy the line is and what waits for the engineers."""

from __future__ import annotations

from flask import Blueprint, render_template

from hotline import reports
from web.asr import asr_problem
from web.auth import require_login
from web.db import session, settings

bp = Blueprint("overview", __name__)
require_login(bp)


@bp.get("/")
def index() -> str:
    tz = settings().business_hours.timezone
    figures = reports.overview(session(), tz, days=30)
    day_labels = [day.strftime("%d.%m") for day, _ in figures.days]
    return render_template(
        "overview.html", o=figures, tz=tz, day_labels=day_labels, asr_problem=asr_problem(settings())
    )
