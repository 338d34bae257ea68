"""iCalendar feeds: subscribe to your Mailroom activities from Google Calendar, Outlook or Apple Calendar."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from services.api.calendar import service
from services.api.calendar.schemas import CalendarFeedIn, CalendarFeedOut
from services.api.deps import CurrentCaller, DbSession, parse_id
from services.api.problems import ProblemDetail

router = APIRouter(tags=["calendar"])

ICS = "text/calendar; charset=utf-8"


@router.post("/v1/calendar-feeds", response_model=CalendarFeedOut, status_code=status.HTTP_201_CREATED)
def issue_calendar_feed(
    request: Request, caller: CurrentCaller, session: DbSession, body: CalendarFeedIn | None = None
) -> CalendarFeedOut:
    """A new secret feed URL for a user's activities (yours, with a user-bound token). The previous URL stops
    working."""
    user, secret = service.issue_feed(session, caller, (body or CalendarFeedIn()).user_id)
    url = str(request.url_for("calendar_feed", feed_file=f"{secret}.ics"))
    return CalendarFeedOut(user_id=str(user.id), url=url)


@router.delete("/v1/calendar-feeds/{user_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def revoke_calendar_feed(user_id: str, caller: CurrentCaller, session: DbSession) -> Response:
    """Turn the user's feed off: its URL stops working."""
    service.revoke_feed(session, caller, parse_id(user_id, "User"))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/calendar/{feed_file}",
    name="calendar_feed",
    response_class=Response,
    responses={
        200: {"content": {"text/calendar": {}}, "description": "An RFC 5545 calendar of the user's activities."},
        404: {"model": ProblemDetail, "description": "No feed with this URL (never issued, replaced or revoked)."},
    },
)
def calendar_feed(feed_file: str, session: DbSession) -> Response:
    """The feed itself. No `Authorization` header (calendar apps cannot send one): the URL is the secret."""
    secret = feed_file.removesuffix(".ics")
    body = service.render_feed(session, secret)
    return Response(content=body, media_type=ICS, headers={"Cache-Control": "private, max-age=300"})
