"""CRM records the matcher reads and writes: persons, organizations, pipelines and stages, deals, activities."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy.orm import Session

from services.api.common import Page, sid
from services.api.crm import activities, deals, organizations, persons, pipelines
from services.api.crm.schemas import (
    ActivityIn,
    ActivityOut,
    ActivityPatch,
    DealIn,
    DealOut,
    DealPatch,
    OrganizationIn,
    OrganizationOut,
    OrganizationPatch,
    PersonIn,
    PersonOut,
    PersonPatch,
    PipelineIn,
    PipelineOut,
    PipelinePatch,
    StageIn,
    StageOut,
    StagePatch,
)
from services.api.custom_fields import service as custom_fields
from services.api.deps import CurrentCaller, DbSession, filter_id, parse_id
from services.api.pagination import DEFAULT_LIMIT, Cursor, Limit
from shared.models import Activity, Deal, Organization, Person, Pipeline, Stage

router = APIRouter(prefix="/v1")

Search = Annotated[str | None, Query(min_length=1, max_length=200, description="Part of the name.")]
IncludeDeleted = Annotated[bool, Query(description="Also list deleted records (they keep their history).")]


def _no_content() -> Response:
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- persons ---------------------------------------------------------------------------------------------------


@router.get("/persons", response_model=Page[PersonOut], tags=["persons"])
def list_persons(
    request: Request,
    caller: CurrentCaller,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    email: Annotated[str | None, Query(max_length=320)] = None,
    organization_id: str | None = None,
    q: Search = None,
    include_deleted: IncludeDeleted = False,
) -> Page[PersonOut]:
    """Filter by custom fields with `custom.<key>=value`."""
    filters = persons.PersonFilters(
        email=email,
        organization_id=filter_id(organization_id),
        q=q,
        include_deleted=include_deleted,
        custom=custom_fields.filters(session, caller.account_id, custom_fields.Entity.person, request.query_params),
    )
    rows, next_cursor = persons.list_persons(session, caller, filters, cursor, limit)
    return Page[PersonOut](data=_persons(session, rows), next_cursor=next_cursor)


@router.post("/persons", response_model=PersonOut, status_code=status.HTTP_201_CREATED, tags=["persons"])
def create_person(body: PersonIn, caller: CurrentCaller, session: DbSession) -> PersonOut:
    return _persons(session, [persons.create_person(session, caller, body)])[0]


@router.get("/persons/{person_id}", response_model=PersonOut, tags=["persons"])
def get_person(person_id: str, caller: CurrentCaller, session: DbSession) -> PersonOut:
    """A person, also when deleted (`deleted_at` set): mail and deals still point at it."""
    return _persons(session, [persons.get_person(session, caller, parse_id(person_id, "Person"))])[0]


@router.patch("/persons/{person_id}", response_model=PersonOut, tags=["persons"])
def update_person(person_id: str, body: PersonPatch, caller: CurrentCaller, session: DbSession) -> PersonOut:
    return _persons(session, [persons.update_person(session, caller, parse_id(person_id, "Person"), body)])[0]


@router.delete(
    "/persons/{person_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, tags=["persons"]
)
def delete_person(person_id: str, caller: CurrentCaller, session: DbSession) -> Response:
    """Delete a contact but keep their history: messages, activities and deals stay, and Mailroom never
    re-creates the person from later mail."""
    persons.delete_person(session, caller, parse_id(person_id, "Person"))
    return _no_content()


def _persons(session: Session, rows: list[Person]) -> list[PersonOut]:
    emails = persons.emails_of(session, rows)
    return [
        PersonOut(
            id=str(p.id),
            name=p.name,
            emails=emails[p.id],
            phone=p.phone,
            organization_id=sid(p.organization_id),
            created_from=p.created_from,
            created_by_rule=p.created_by_rule,
            created_by_message_id=sid(p.created_by_message_id),
            deleted_at=p.deleted_at,
            created_at=p.created_at,
            custom_fields=p.custom_fields,
            external_id=p.external_id,
        )
        for p in rows
    ]


# --- organizations ---------------------------------------------------------------------------------------------


@router.get("/organizations", response_model=Page[OrganizationOut], tags=["organizations"])
def list_organizations(
    request: Request,
    caller: CurrentCaller,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    domain: Annotated[str | None, Query(max_length=253)] = None,
    q: Search = None,
    include_deleted: IncludeDeleted = False,
) -> Page[OrganizationOut]:
    """Filter by custom fields with `custom.<key>=value`."""
    filters = organizations.OrganizationFilters(
        domain=domain,
        q=q,
        include_deleted=include_deleted,
        custom=custom_fields.filters(
            session, caller.account_id, custom_fields.Entity.organization, request.query_params
        ),
    )
    rows, next_cursor = organizations.list_organizations(session, caller, filters, cursor, limit)
    return Page[OrganizationOut](data=_organizations(session, rows), next_cursor=next_cursor)


@router.post(
    "/organizations", response_model=OrganizationOut, status_code=status.HTTP_201_CREATED, tags=["organizations"]
)
def create_organization(body: OrganizationIn, caller: CurrentCaller, session: DbSession) -> OrganizationOut:
    return _organizations(session, [organizations.create_organization(session, caller, body)])[0]


@router.get("/organizations/{organization_id}", response_model=OrganizationOut, tags=["organizations"])
def get_organization(organization_id: str, caller: CurrentCaller, session: DbSession) -> OrganizationOut:
    found = organizations.get_organization(session, caller, parse_id(organization_id, "Organization"))
    return _organizations(session, [found])[0]


@router.patch("/organizations/{organization_id}", response_model=OrganizationOut, tags=["organizations"])
def update_organization(
    organization_id: str, body: OrganizationPatch, caller: CurrentCaller, session: DbSession
) -> OrganizationOut:
    found = organizations.update_organization(session, caller, parse_id(organization_id, "Organization"), body)
    return _organizations(session, [found])[0]


@router.delete(
    "/organizations/{organization_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    tags=["organizations"],
)
def delete_organization(organization_id: str, caller: CurrentCaller, session: DbSession) -> Response:
    """Soft delete, like persons: its history stays."""
    organizations.delete_organization(session, caller, parse_id(organization_id, "Organization"))
    return _no_content()


def _organizations(session: Session, rows: list[Organization]) -> list[OrganizationOut]:
    domains = organizations.domains_of(session, rows)
    return [
        OrganizationOut(
            id=str(o.id),
            name=o.name,
            domains=domains[o.id],
            created_from=o.created_from,
            created_by_rule=o.created_by_rule,
            created_by_message_id=sid(o.created_by_message_id),
            deleted_at=o.deleted_at,
            created_at=o.created_at,
            custom_fields=o.custom_fields,
            external_id=o.external_id,
        )
        for o in rows
    ]


# --- pipelines and stages --------------------------------------------------------------------------------------


@router.get("/pipelines", response_model=Page[PipelineOut], tags=["pipelines"])
def list_pipelines(
    caller: CurrentCaller, session: DbSession, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Page[PipelineOut]:
    rows, next_cursor = pipelines.list_pipelines(session, caller, cursor, limit)
    return Page[PipelineOut](data=_pipelines(session, rows), next_cursor=next_cursor)


@router.post("/pipelines", response_model=PipelineOut, status_code=status.HTTP_201_CREATED, tags=["pipelines"])
def create_pipeline(body: PipelineIn, caller: CurrentCaller, session: DbSession) -> PipelineOut:
    return _pipelines(session, [pipelines.create_pipeline(session, caller, body)])[0]


@router.get("/pipelines/{pipeline_id}", response_model=PipelineOut, tags=["pipelines"])
def get_pipeline(pipeline_id: str, caller: CurrentCaller, session: DbSession) -> PipelineOut:
    return _pipelines(session, [pipelines.get_pipeline(session, caller, parse_id(pipeline_id, "Pipeline"))])[0]


@router.patch("/pipelines/{pipeline_id}", response_model=PipelineOut, tags=["pipelines"])
def update_pipeline(pipeline_id: str, body: PipelinePatch, caller: CurrentCaller, session: DbSession) -> PipelineOut:
    found = pipelines.update_pipeline(session, caller, parse_id(pipeline_id, "Pipeline"), body)
    return _pipelines(session, [found])[0]


@router.delete(
    "/pipelines/{pipeline_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, tags=["pipelines"]
)
def delete_pipeline(pipeline_id: str, caller: CurrentCaller, session: DbSession) -> Response:
    """Delete an empty pipeline (409 while deals are in it)."""
    pipelines.delete_pipeline(session, caller, parse_id(pipeline_id, "Pipeline"))
    return _no_content()


@router.post(
    "/pipelines/{pipeline_id}/stages", response_model=StageOut, status_code=status.HTTP_201_CREATED, tags=["pipelines"]
)
def add_stage(pipeline_id: str, body: StageIn, caller: CurrentCaller, session: DbSession) -> StageOut:
    return _stage(pipelines.add_stage(session, caller, parse_id(pipeline_id, "Pipeline"), body))


@router.patch("/pipelines/{pipeline_id}/stages/{stage_id}", response_model=StageOut, tags=["pipelines"])
def update_stage(
    pipeline_id: str, stage_id: str, body: StagePatch, caller: CurrentCaller, session: DbSession
) -> StageOut:
    """Rename or move a stage (`position` orders the stages of a pipeline)."""
    found = pipelines.update_stage(
        session, caller, parse_id(pipeline_id, "Pipeline"), parse_id(stage_id, "Stage"), body
    )
    return _stage(found)


@router.delete(
    "/pipelines/{pipeline_id}/stages/{stage_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    tags=["pipelines"],
)
def delete_stage(pipeline_id: str, stage_id: str, caller: CurrentCaller, session: DbSession) -> Response:
    """Delete an empty stage (409 while deals are in it)."""
    pipelines.delete_stage(session, caller, parse_id(pipeline_id, "Pipeline"), parse_id(stage_id, "Stage"))
    return _no_content()


def _pipelines(session: Session, rows: list[Pipeline]) -> list[PipelineOut]:
    stages = pipelines.stages_of(session, rows)
    return [
        PipelineOut(id=str(p.id), name=p.name, stages=[_stage(s) for s in stages[p.id]], created_at=p.created_at)
        for p in rows
    ]


def _stage(stage: Stage) -> StageOut:
    return StageOut(id=str(stage.id), pipeline_id=str(stage.pipeline_id), name=stage.name, position=stage.position)


# --- deals -----------------------------------------------------------------------------------------------------


@router.get("/deals", response_model=Page[DealOut], tags=["deals"])
def list_deals(
    request: Request,
    caller: CurrentCaller,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    person_id: str | None = None,
    organization_id: str | None = None,
    pipeline_id: str | None = None,
    stage_id: str | None = None,
    status: Literal["open", "won", "lost"] | None = None,
) -> Page[DealOut]:
    filters = deals.DealFilters(
        person_id=filter_id(person_id),
        organization_id=filter_id(organization_id),
        pipeline_id=filter_id(pipeline_id),
        stage_id=filter_id(stage_id),
        status=status,
        custom=custom_fields.filters(session, caller.account_id, custom_fields.Entity.deal, request.query_params),
    )
    rows, next_cursor = deals.list_deals(session, caller, filters, cursor, limit)
    return Page[DealOut](data=[_deal(d) for d in rows], next_cursor=next_cursor)


@router.post("/deals", response_model=DealOut, status_code=201, tags=["deals"])
def create_deal(body: DealIn, caller: CurrentCaller, session: DbSession) -> DealOut:
    """A deal must reference a person or an organization of your account."""
    return _deal(deals.create_deal(session, caller, body))


@router.get("/deals/{deal_id}", response_model=DealOut, tags=["deals"])
def get_deal(deal_id: str, caller: CurrentCaller, session: DbSession) -> DealOut:
    return _deal(deals.get_deal(session, caller, parse_id(deal_id, "Deal")))


@router.patch("/deals/{deal_id}", response_model=DealOut, tags=["deals"])
def update_deal(deal_id: str, body: DealPatch, caller: CurrentCaller, session: DbSession) -> DealOut:
    """Change fields; status and stage changes appear on the deal's timeline."""
    return _deal(deals.update_deal(session, caller, parse_id(deal_id, "Deal"), body))


@router.delete("/deals/{deal_id}", status_code=204, response_class=Response, tags=["deals"])
def delete_deal(deal_id: str, caller: CurrentCaller, session: DbSession) -> Response:
    """Delete the deal. Its threads keep their mail (on the persons' timelines) and wait for a new decision."""
    deals.delete_deal(session, caller, parse_id(deal_id, "Deal"))
    return _no_content()


def _deal(deal: Deal) -> DealOut:
    return DealOut(
        id=str(deal.id),
        title=deal.title,
        person_id=sid(deal.person_id),
        organization_id=sid(deal.organization_id),
        pipeline_id=sid(deal.pipeline_id),
        stage_id=sid(deal.stage_id),
        status=deal.status,  # type: ignore[arg-type]  # stored from the DealStatus enum
        value=deal.value,
        currency=deal.currency,
        expected_close_date=deal.expected_close_date,
        won_at=deal.won_at,
        lost_at=deal.lost_at,
        created_at=deal.created_at,
        custom_fields=deal.custom_fields,
        external_id=deal.external_id,
        recurrence=deal.recurrence,  # type: ignore[arg-type]  # validated on the way in
        recurs_from_deal_id=sid(deal.recurs_from_deal_id),
    )


# --- activities ------------------------------------------------------------------------------------------------


@router.get("/activities", response_model=Page[ActivityOut], tags=["activities"])
def list_activities(
    caller: CurrentCaller,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    person_id: str | None = None,
    organization_id: str | None = None,
    deal_id: str | None = None,
    user_id: str | None = None,
    done: bool | None = None,
    type: Annotated[str | None, Query(max_length=32)] = None,
) -> Page[ActivityOut]:
    filters = activities.ActivityFilters(
        person_id=filter_id(person_id),
        organization_id=filter_id(organization_id),
        deal_id=filter_id(deal_id),
        user_id=filter_id(user_id),
        done=done,
        type=type,
    )
    rows, next_cursor = activities.list_activities(session, caller, filters, cursor, limit)
    return Page[ActivityOut](data=[_activity(a) for a in rows], next_cursor=next_cursor)


@router.post("/activities", response_model=ActivityOut, status_code=201, tags=["activities"])
def create_activity(body: ActivityIn, caller: CurrentCaller, session: DbSession) -> ActivityOut:
    return _activity(activities.create_activity(session, caller, body))


@router.get("/activities/{activity_id}", response_model=ActivityOut, tags=["activities"])
def get_activity(activity_id: str, caller: CurrentCaller, session: DbSession) -> ActivityOut:
    return _activity(activities.get_activity(session, caller, parse_id(activity_id, "Activity")))


@router.patch("/activities/{activity_id}", response_model=ActivityOut, tags=["activities"])
def update_activity(activity_id: str, body: ActivityPatch, caller: CurrentCaller, session: DbSession) -> ActivityOut:
    return _activity(activities.update_activity(session, caller, parse_id(activity_id, "Activity"), body))


@router.delete("/activities/{activity_id}", status_code=204, response_class=Response, tags=["activities"])
def delete_activity(activity_id: str, caller: CurrentCaller, session: DbSession) -> Response:
    activities.delete_activity(session, caller, parse_id(activity_id, "Activity"))
    return _no_content()


def _activity(a: Activity) -> ActivityOut:
    return ActivityOut(
        id=str(a.id),
        type=a.type,
        subject=a.subject,
        note=a.note,
        due_at=a.due_at,
        done=a.done,
        done_at=a.done_at,
        user_id=sid(a.user_id),
        person_id=sid(a.person_id),
        organization_id=sid(a.organization_id),
        deal_id=sid(a.deal_id),
        created_at=a.created_at,
    )
