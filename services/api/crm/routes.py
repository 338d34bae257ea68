"""CRM records the matcher reads and writes: persons, organizations (and their relations), pipelines and stages
(and who may see their deals), deals, activities (and their types), notes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy.orm import Session

from services.api.common import Page, sid
from services.api.crm import activities, activity_types, deals, notes, organizations, persons, pipelines, relations
from services.api.crm.addresses import record_addresses
from services.api.crm.schemas import (
    ActivityIn,
    ActivityOut,
    ActivityPatch,
    ActivityTypeIn,
    ActivityTypeOut,
    ActivityTypePatch,
    DealIn,
    DealOut,
    DealPatch,
    NoteIn,
    NoteOut,
    NotePatch,
    OrganizationIn,
    OrganizationOut,
    OrganizationPatch,
    OrganizationRelationIn,
    OrganizationRelationOut,
    PersonIn,
    PersonOut,
    PersonPatch,
    PipelineAccessIn,
    PipelineIn,
    PipelineOut,
    PipelinePatch,
    StageIn,
    StageOut,
    StagePatch,
)
from services.api.custom_fields import service as custom_fields
from services.api.deps import AppSettings, Caller, CurrentCaller, DbSession, filter_id, parse_id
from services.api.pagination import DEFAULT_LIMIT, Cursor, Limit
from services.api.provenance import actor_out, created_by_of
from shared.models import (
    Activity,
    ActivityType,
    CustomFieldEntity,
    Deal,
    DealStatus,
    Note,
    Organization,
    Person,
    Pipeline,
    Stage,
)

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
        custom=custom_fields.filters(session, caller.account_id, CustomFieldEntity.person, request.query_params),
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
            created_by=created_by_of(p.created_by, p.created_from, p.created_by_rule, p.created_by_message_id),
            updated_by=actor_out(p.updated_by),
            updated_at=p.updated_at,
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
        custom=custom_fields.filters(session, caller.account_id, CustomFieldEntity.organization, request.query_params),
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
            created_by=created_by_of(o.created_by, o.created_from, o.created_by_rule, o.created_by_message_id),
            updated_by=actor_out(o.updated_by),
            updated_at=o.updated_at,
            custom_fields=o.custom_fields,
            external_id=o.external_id,
        )
        for o in rows
    ]


@router.get(
    "/organizations/{organization_id}/relations", response_model=list[OrganizationRelationOut], tags=["organizations"]
)
def list_organization_relations(
    organization_id: str, caller: CurrentCaller, session: DbSession
) -> list[OrganizationRelationOut]:
    """Parents, subsidiaries and related organizations; a relation shows on both organizations."""
    found = relations.list_relations(session, caller, parse_id(organization_id, "Organization"))
    return [_relation(r) for r in found]


@router.post(
    "/organizations/{organization_id}/relations",
    response_model=OrganizationRelationOut,
    status_code=status.HTTP_201_CREATED,
    tags=["organizations"],
)
def add_organization_relation(
    organization_id: str, body: OrganizationRelationIn, caller: CurrentCaller, session: DbSession
) -> OrganizationRelationOut:
    """Relate another organization to this one: `type` says what the other one is (`parent`, `subsidiary`,
    `related`); the other organization then shows this one as the converse."""
    return _relation(relations.add_relation(session, caller, parse_id(organization_id, "Organization"), body))


@router.delete(
    "/organizations/{organization_id}/relations/{relation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    tags=["organizations"],
)
def delete_organization_relation(
    organization_id: str, relation_id: str, caller: CurrentCaller, session: DbSession
) -> Response:
    relations.delete_relation(
        session, caller, parse_id(organization_id, "Organization"), parse_id(relation_id, "Relation")
    )
    return _no_content()


def _relation(view: relations.RelationView) -> OrganizationRelationOut:
    return OrganizationRelationOut(
        id=str(view.id),
        organization_id=str(view.other_id),
        organization_name=view.other_name,
        type=view.type,  # type: ignore[arg-type]  # one of the three the service computes
        created_at=view.created_at,
        created_by=actor_out(view.created_by),
    )


# --- pipelines and stages --------------------------------------------------------------------------------------


@router.get("/pipelines", response_model=Page[PipelineOut], tags=["pipelines"])
def list_pipelines(
    caller: CurrentCaller, session: DbSession, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Page[PipelineOut]:
    rows, next_cursor = pipelines.list_pipelines(session, caller, cursor, limit)
    return Page[PipelineOut](data=_pipelines(session, rows), next_cursor=next_cursor)


@router.post("/pipelines", response_model=PipelineOut, status_code=status.HTTP_201_CREATED, tags=["pipelines"])
def create_pipeline(body: PipelineIn, caller: CurrentCaller, session: DbSession) -> PipelineOut:
    """Without `stages`, the pipeline gets the standard ones: New, Qualified, Proposal, Negotiation, Won, Lost
    (rename, reorder, add or delete them later)."""
    return _pipelines(session, [pipelines.create_pipeline(session, caller, body)])[0]


@router.get("/pipelines/{pipeline_id}", response_model=PipelineOut, tags=["pipelines"])
def get_pipeline(pipeline_id: str, caller: CurrentCaller, session: DbSession) -> PipelineOut:
    return _pipelines(session, [pipelines.get_pipeline(session, caller, parse_id(pipeline_id, "Pipeline"))])[0]


@router.patch("/pipelines/{pipeline_id}", response_model=PipelineOut, tags=["pipelines"])
def update_pipeline(pipeline_id: str, body: PipelinePatch, caller: CurrentCaller, session: DbSession) -> PipelineOut:
    found = pipelines.update_pipeline(session, caller, parse_id(pipeline_id, "Pipeline"), body)
    return _pipelines(session, [found])[0]


@router.put("/pipelines/{pipeline_id}/access", response_model=PipelineOut, tags=["pipelines"])
def set_pipeline_access(
    pipeline_id: str, body: PipelineAccessIn, caller: CurrentCaller, session: DbSession
) -> PipelineOut:
    """Who sees and edits the pipeline's deals (and their mail, activities, notes and files) through user-bound
    tokens: everyone (`restricted: false`) or only `member_user_ids`. Account tokens always see everything. Needs
    scope `admin`."""
    found = pipelines.set_access(session, caller, parse_id(pipeline_id, "Pipeline"), body)
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
    members = pipelines.members_of(session, rows)
    return [
        PipelineOut(
            id=str(p.id),
            name=p.name,
            stages=[_stage(s) for s in stages[p.id]],
            restricted=p.restricted,
            member_user_ids=members[p.id],
            created_at=p.created_at,
        )
        for p in rows
    ]


def _stage(stage: Stage) -> StageOut:
    return StageOut(
        id=str(stage.id),
        pipeline_id=str(stage.pipeline_id),
        name=stage.name,
        position=stage.position,
        probability=stage.probability,
    )


# --- deals -----------------------------------------------------------------------------------------------------


@router.get("/deals", response_model=Page[DealOut], tags=["deals"])
def list_deals(
    request: Request,
    caller: CurrentCaller,
    session: DbSession,
    settings: AppSettings,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    person_id: str | None = None,
    organization_id: str | None = None,
    pipeline_id: str | None = None,
    stage_id: str | None = None,
    owner_user_id: str | None = None,
    status: DealStatus | None = None,
    include_deleted: IncludeDeleted = False,
) -> Page[DealOut]:
    """The deals the token may see (user-bound tokens: pipelines they have access to, and no one else's private
    deals)."""
    filters = deals.DealFilters(
        person_id=filter_id(person_id),
        organization_id=filter_id(organization_id),
        pipeline_id=filter_id(pipeline_id),
        stage_id=filter_id(stage_id),
        owner_user_id=filter_id(owner_user_id),
        status=status,
        include_deleted=include_deleted,
        custom=custom_fields.filters(session, caller.account_id, CustomFieldEntity.deal, request.query_params),
    )
    rows, next_cursor = deals.list_deals(session, caller, filters, cursor, limit)
    return Page[DealOut](data=_deals(session, caller, settings, rows), next_cursor=next_cursor)


@router.post("/deals", response_model=DealOut, status_code=201, tags=["deals"])
def create_deal(body: DealIn, caller: CurrentCaller, session: DbSession, settings: AppSettings) -> DealOut:
    """A deal must reference a person or an organization of your account. Giving only `pipeline_id` puts it in
    the pipeline's first stage."""
    return _deals(session, caller, settings, [deals.create_deal(session, caller, body)])[0]


@router.get("/deals/{deal_id}", response_model=DealOut, tags=["deals"])
def get_deal(deal_id: str, caller: CurrentCaller, session: DbSession, settings: AppSettings) -> DealOut:
    """A deal, also when deleted (`deleted_at` set): its history stays readable."""
    return _deals(session, caller, settings, [deals.get_deal(session, caller, parse_id(deal_id, "Deal"))])[0]


@router.patch("/deals/{deal_id}", response_model=DealOut, tags=["deals"])
def update_deal(
    deal_id: str, body: DealPatch, caller: CurrentCaller, session: DbSession, settings: AppSettings
) -> DealOut:
    """Change fields; moves between stages and pipelines, status changes and other edits each appear on the
    deal's timeline as a deal event, with who made them."""
    found = deals.update_deal(session, caller, parse_id(deal_id, "Deal"), body)
    return _deals(session, caller, settings, [found])[0]


@router.delete("/deals/{deal_id}", status_code=204, response_class=Response, tags=["deals"])
def delete_deal(deal_id: str, caller: CurrentCaller, session: DbSession) -> Response:
    """Delete the deal: it leaves lists and cannot be chosen for mail any more, but keeps its history (events,
    mail, activities, notes) and can still be opened by id."""
    deals.delete_deal(session, caller, parse_id(deal_id, "Deal"))
    return _no_content()


def _deals(session: Session, caller: Caller, settings: AppSettings, rows: list[Deal]) -> list[DealOut]:
    addresses = record_addresses(session, caller, settings.bcc_domain, "deal", [(d.id, d.owner_user_id) for d in rows])
    return [_deal(d, addresses[d.id]) for d in rows]


def _deal(deal: Deal, bcc_address: str | None) -> DealOut:
    return DealOut(
        id=str(deal.id),
        title=deal.title,
        person_id=sid(deal.person_id),
        organization_id=sid(deal.organization_id),
        pipeline_id=sid(deal.pipeline_id),
        stage_id=sid(deal.stage_id),
        status=deal.status,
        value=deal.value,
        currency=deal.currency,
        expected_close_date=deal.expected_close_date,
        won_at=deal.won_at,
        lost_at=deal.lost_at,
        owner_user_id=sid(deal.owner_user_id),
        visibility=deal.visibility,
        bcc_address=bcc_address,
        deleted_at=deal.deleted_at,
        created_at=deal.created_at,
        created_by=actor_out(deal.created_by),
        updated_by=actor_out(deal.updated_by),
        updated_at=deal.updated_at,
        custom_fields=deal.custom_fields,
        external_id=deal.external_id,
        recurrence=deal.recurrence,
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
    lead_id: str | None = None,
    user_id: str | None = None,
    done: bool | None = None,
    type: Annotated[str | None, Query(max_length=32)] = None,
) -> Page[ActivityOut]:
    filters = activities.ActivityFilters(
        person_id=filter_id(person_id),
        organization_id=filter_id(organization_id),
        deal_id=filter_id(deal_id),
        lead_id=filter_id(lead_id),
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
        time_zone=a.time_zone,
        duration_minutes=a.duration_minutes,
        done=a.done,
        done_at=a.done_at,
        user_id=sid(a.user_id),
        person_id=sid(a.person_id),
        organization_id=sid(a.organization_id),
        deal_id=sid(a.deal_id),
        lead_id=sid(a.lead_id),
        created_at=a.created_at,
        created_by=actor_out(a.created_by),
        updated_by=actor_out(a.updated_by),
        updated_at=a.updated_at,
    )


# --- activity types --------------------------------------------------------------------------------------------


@router.get("/activity-types", response_model=list[ActivityTypeOut], tags=["activities"])
def list_activity_types(caller: CurrentCaller, session: DbSession) -> list[ActivityTypeOut]:
    """The account's activity types, in order; every account starts with call, meeting, task, deadline, email,
    lunch."""
    return [_activity_type(t) for t in activity_types.list_types(session, caller)]


@router.post("/activity-types", response_model=ActivityTypeOut, status_code=201, tags=["activities"])
def add_activity_type(body: ActivityTypeIn, caller: CurrentCaller, session: DbSession) -> ActivityTypeOut:
    return _activity_type(activity_types.add_type(session, caller, body))


@router.patch("/activity-types/{type_key}", response_model=ActivityTypeOut, tags=["activities"])
def update_activity_type(
    type_key: str, body: ActivityTypePatch, caller: CurrentCaller, session: DbSession
) -> ActivityTypeOut:
    """Rename a type, or retire it (`active: false`): its activities keep it, new ones cannot use it."""
    return _activity_type(activity_types.update_type(session, caller, type_key, body))


def _activity_type(t: ActivityType) -> ActivityTypeOut:
    return ActivityTypeOut(key=t.key, name=t.name, active=t.active)


# --- notes -----------------------------------------------------------------------------------------------------


@router.get("/notes", response_model=Page[NoteOut], tags=["notes"])
def list_notes(
    caller: CurrentCaller,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    person_id: str | None = None,
    organization_id: str | None = None,
    deal_id: str | None = None,
    lead_id: str | None = None,
) -> Page[NoteOut]:
    filters = notes.NoteFilters(
        person_id=filter_id(person_id),
        organization_id=filter_id(organization_id),
        deal_id=filter_id(deal_id),
        lead_id=filter_id(lead_id),
    )
    rows, next_cursor = notes.list_notes(session, caller, filters, cursor, limit)
    return Page[NoteOut](data=[_note(n) for n in rows], next_cursor=next_cursor)


@router.post("/notes", response_model=NoteOut, status_code=201, tags=["notes"])
def create_note(body: NoteIn, caller: CurrentCaller, session: DbSession) -> NoteOut:
    """A note on a person, organization, deal and/or lead; it shows on their timelines."""
    return _note(notes.create_note(session, caller, body))


@router.get("/notes/{note_id}", response_model=NoteOut, tags=["notes"])
def get_note(note_id: str, caller: CurrentCaller, session: DbSession) -> NoteOut:
    return _note(notes.get_note(session, caller, parse_id(note_id, "Note")))


@router.patch("/notes/{note_id}", response_model=NoteOut, tags=["notes"])
def update_note(note_id: str, body: NotePatch, caller: CurrentCaller, session: DbSession) -> NoteOut:
    return _note(notes.update_note(session, caller, parse_id(note_id, "Note"), body))


@router.delete("/notes/{note_id}", status_code=204, response_class=Response, tags=["notes"])
def delete_note(note_id: str, caller: CurrentCaller, session: DbSession) -> Response:
    notes.delete_note(session, caller, parse_id(note_id, "Note"))
    return _no_content()


def _note(n: Note) -> NoteOut:
    return NoteOut(
        id=str(n.id),
        content=n.content,
        person_id=sid(n.person_id),
        organization_id=sid(n.organization_id),
        deal_id=sid(n.deal_id),
        lead_id=sid(n.lead_id),
        created_at=n.created_at,
        created_by=actor_out(n.created_by),
        updated_by=actor_out(n.updated_by),
        updated_at=n.updated_at,
    )
