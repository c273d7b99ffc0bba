"""A course's term on the clock: when its hub is made, when students are told to take their work, when
it goes. Pure: `hubfleet reconcile` (hubfleet/reconcile.py) asks it what a course should be at a moment.

    warm_at ── start ── ... ── notice_at ── end_at ── (grace) ── remove_at
    waiting  │        live                  │      grace      │   over

`dates.start` and `dates.end` are days (UTC): the term begins at 00:00 of the start and ends at 24:00 of
the end day. The durations come from the descriptor's `dates`, else the site's `term` section.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from hubfleet.descriptor import Course
from hubfleet.inputs import duration_seconds
from hubfleet.site import TermSite

Phase = Literal["waiting", "live", "grace", "over"]
UTC = dt.timezone.utc


@dataclass(frozen=True)
class Term:
    warm_at: dt.datetime
    start_at: dt.datetime
    notice_at: dt.datetime
    end_at: dt.datetime
    remove_at: dt.datetime

    def phase(self, now: dt.datetime) -> Phase:
        if now < self.warm_at:
            return "waiting"
        if now < self.end_at:
            return "live"
        if now < self.remove_at:
            return "grace"
        return "over"

    def banner(self, now: dt.datetime) -> str:
        """The hub's announcement at `now` (plain text; the hub escapes it and links the export page), or "".

        One text from notice_at to remove_at, true before and after the end: the end of the term changes
        no setting, so it restarts no hub.
        """
        if now < self.notice_at or now >= self.remove_at:
            return ""
        return (f"This course's last day is {self.end_at.date() - dt.timedelta(days=1)}. Download your work before "
                f"{moment(self.remove_at)}: the hub and your files are removed then.")

    def to_dict(self) -> dict:
        return {k: moment(getattr(self, k)) for k in ("warm_at", "start_at", "notice_at", "end_at", "remove_at")}


def moment(when: dt.datetime) -> str:
    """One format for every moment shown: `2027-01-31 00:00 UTC`."""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def term_of(course: Course, site: TermSite) -> Term:
    dates = course.dates
    start = dt.datetime.combine(dates.start, dt.time(), UTC)
    end = dt.datetime.combine(dates.end + dt.timedelta(days=1), dt.time(), UTC)
    warm = dt.timedelta(seconds=duration_seconds(dates.warm_before or site.warm_before))
    grace = dt.timedelta(seconds=duration_seconds(dates.grace_after or site.grace_after))
    notice = dt.timedelta(seconds=duration_seconds(site.notice_before))
    return Term(warm_at=start - warm, start_at=start, notice_at=max(start, end - notice), end_at=end,
                remove_at=end + grace)


def parse_now(text: str) -> dt.datetime:
    """`--now`: an ISO 8601 date or date and time; without a zone it is UTC. ValueError names the fix."""
    value = text.strip()
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if len(value) > 10 else \
            dt.datetime.combine(dt.date.fromisoformat(value), dt.time())
    except ValueError:
        raise ValueError(f"{text[:60]!r} is not a date or time — write 2027-01-31 or 2027-01-31T08:00 "
                         "(UTC unless a zone is given, e.g. 2027-01-31T08:00+01:00)") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
