"""Analytics for supervisors and admins: the page (/analytics), its CSV, and GET /api/v1/analytics for a
help desk's own dashboards. The figures are visassist/analytics.py's."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from visassist.accounts import OVERSEERS, staff_member
from visassist.analytics import CAUSES, FUNNEL, AnalyticsOut, analytics, csv_text
from visassist.api import _validation_error, authenticate
from visassist.context import AppContext
from visassist.errors import ApiErrorCode, ClientError
from visassist.pages import render

routes = web.RouteTableDef()

DEFAULT_DAYS = 7
MAX_DAYS = 366


class PeriodQuery(BaseModel):
    """`from` and `to`: the first and last day (UTC) whose created sessions count; a week to today
    when left out."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: Annotated[date | None, Field(alias="from")] = None
    to: date | None = None

    @model_validator(mode="after")
    def _sane(self) -> PeriodQuery:
        if self.from_ and self.to and self.from_ > self.to:
            raise ValueError("from is after to")
        return self

    def window(self, today: date) -> tuple[datetime, datetime]:
        last = self.to or today
        first = self.from_ or last - timedelta(days=DEFAULT_DAYS - 1)
        if (last - first).days >= MAX_DAYS:
            raise ValueError(f"a period is at most {MAX_DAYS} days")
        return (datetime.combine(first, time(), UTC), datetime.combine(last + timedelta(days=1), time(), UTC))


async def _figures(request: web.Request, query: PeriodQuery) -> AnalyticsOut:
    ctx = request.app[AppContext.KEY]
    now = ctx.sessions.clock()
    created_from, created_to = query.window(now.date())
    facts = await ctx.store.session_facts(created_from, created_to)
    return analytics(facts, created_from, created_to, now)


def _query(request: web.Request) -> PeriodQuery:
    try:
        query = PeriodQuery.model_validate(dict(request.query))
        query.window(date.today())  # the span check, before anything is read
    except ValidationError as exc:
        raise _validation_error(exc) from None
    except ValueError as exc:
        raise ClientError(ApiErrorCode.VALIDATION_FAILED, str(exc), status=422,
                          details=[{"field": "from", "message": str(exc)}]) from None
    return query


@routes.get("/api/v1/analytics")
async def analytics_api(request: web.Request) -> web.Response:
    await authenticate(request)
    result = await _figures(request, _query(request))
    return web.json_response(result.model_dump(mode="json"))


@routes.get("/analytics")
async def analytics_page(request: web.Request) -> web.Response:
    signed_in = await staff_member(request, OVERSEERS)
    error = None
    try:
        query = _query(request)
    except ClientError as exc:
        error, query = exc.message, PeriodQuery()
    result = await _figures(request, query)
    first = datetime.fromisoformat(result.period.created_from).date()
    last = datetime.fromisoformat(result.period.created_to).date() - timedelta(days=1)
    return render("staff/analytics.html", status=400 if error else 200, page="analytics",
                  user=signed_in.user, csrf=signed_in.csrf, result=result,
                  data=result.model_dump(mode="json"),
                  first=first.isoformat(), last=last.isoformat(), causes=dict(CAUSES), funnel=FUNNEL,
                  error=error)


@routes.get("/analytics.csv")
async def analytics_csv(request: web.Request) -> web.Response:
    await staff_member(request, OVERSEERS)
    result = await _figures(request, _query(request))
    first = result.period.created_from[:10]
    last = (datetime.fromisoformat(result.period.created_to) - timedelta(days=1)).date().isoformat()
    return web.Response(text=csv_text(result), content_type="text/csv", charset="utf-8", headers={
        "Content-Disposition": f'attachment; filename="visassist-analytics-{first}-to-{last}.csv"',
        "Cache-Control": "no-store"})
