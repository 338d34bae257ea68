"""A user's activities as an iCalendar feed behind a secret URL, for calendar apps that subscribe by URL.

The secret is stored hashed (like API tokens): the URL is shown once, and asking again replaces it. The feed
shows what the user's own token would see: activities assigned to the user, minus those on deals hidden from
them.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.access import deal_id_visible
from services.api.crm.refs import reference
from services.api.deps import NO_MATCH, Caller
from services.api.problems import invalid, not_found
from shared.models import Activity, ActivityType, TokenScope, User

FEED_PREFIX = "cal_"
# Calendar apps re-read the whole feed every few hours; past activities older than this are left out.
HISTORY = timedelta(days=180)
MAX_EVENTS = 5000
DEFAULT_DURATION = timedelta(minutes=30)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def feed_user(session: Session, caller: Caller, user_ref: str | None) -> User:
    """The user whose feed the caller manages: its own user, or (account tokens) any user of the account."""
    if caller.user_id is not None:
        if user_ref is not None and user_ref != str(caller.user_id):
            raise not_found("User")
        user_id: uuid.UUID | None = caller.user_id
    else:
        user_id = reference(session, caller, User, user_ref, "user_id")
        if user_id is None:
            raise invalid("user_id", "required for an account token", "Say whose calendar feed this is.")
    user = session.scalars(
        select(User).where(User.account_id == caller.account_id, User.id == user_id).with_for_update()
    ).one_or_none()
    if user is None:
        raise not_found("User")
    return user


def issue_feed(session: Session, caller: Caller, user_ref: str | None) -> tuple[User, str]:
    user = feed_user(session, caller, user_ref)
    secret = FEED_PREFIX + secrets.token_urlsafe(32)
    user.calendar_feed_hash = _hash(secret)
    return user, secret


def revoke_feed(session: Session, caller: Caller, user_id: uuid.UUID) -> None:
    if caller.user_id is not None and caller.user_id != user_id:
        raise not_found("User")
    user = session.scalars(
        select(User).where(User.account_id == caller.account_id, User.id == user_id).with_for_update()
    ).one_or_none()
    if user is None:
        raise not_found("User")
    user.calendar_feed_hash = None


def render_feed(session: Session, secret: str) -> bytes:
    user = session.scalars(select(User).where(User.calendar_feed_hash == _hash(secret))).one_or_none()
    if user is None:
        raise not_found("Calendar feed")
    # The feed reads as the user's own token would (no token is involved; the URL is the credential).
    as_user = Caller(account_id=user.account_id, scope=TokenScope.read, user_id=user.id, token_id=NO_MATCH)
    activities = session.scalars(
        select(Activity)
        .where(
            Activity.account_id == user.account_id,
            Activity.user_id == user.id,
            Activity.due_at.is_not(None),
            Activity.due_at >= datetime.now(UTC) - HISTORY,
            deal_id_visible(as_user, Activity.deal_id),
        )
        .order_by(Activity.due_at, Activity.id)
        .limit(MAX_EVENTS)
    ).all()
    type_names = dict(
        session.execute(select(ActivityType.key, ActivityType.name).where(ActivityType.account_id == user.account_id))
        .tuples()
        .all()
    )
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//Mailroom//CRM activities//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", f"Mailroom: {user.name or user.email}")
    for activity in activities:
        calendar.add_component(_event(activity, type_names.get(activity.type, activity.type)))
    # RFC 5545 §3.2.19: every TZID used needs its VTIMEZONE in the calendar.
    calendar.add_missing_timezones()
    ical: bytes = calendar.to_ical()
    return ical


def _event(activity: Activity, type_name: str) -> icalendar.Event:
    assert activity.due_at is not None
    start = activity.due_at.astimezone(ZoneInfo(activity.time_zone) if activity.time_zone else UTC)
    duration = timedelta(minutes=activity.duration_minutes) if activity.duration_minutes else DEFAULT_DURATION
    event = icalendar.Event()
    event.add("uid", f"activity-{activity.id}@mailroom")
    event.add("dtstamp", activity.updated_at or activity.created_at)
    event.add("dtstart", start)
    event.add("dtend", start + duration)
    event.add("summary", f"{type_name}: {activity.subject}")
    if activity.note:
        event.add("description", activity.note)
    event.add("categories", [type_name])
    # A done activity stays in the calendar (it happened), marked so apps can grey it out.
    event.add("status", "CONFIRMED")
    if activity.done:
        event.add("x-mailroom-done", "TRUE")
    return event
