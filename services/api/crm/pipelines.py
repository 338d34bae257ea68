"""Pipelines, their ordered stages, and who may see their deals."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from services.api.access import pipeline_visible
from services.api.crm.refs import reference
from services.api.crm.schemas import (
    STANDARD_STAGES,
    PipelineAccessIn,
    PipelineIn,
    PipelinePatch,
    StageIn,
    StagePatch,
)
from services.api.deps import Caller, insufficient_scope
from services.api.pagination import page_rows, paginate
from services.api.problems import conflict, invalid, not_found
from shared.models import Deal, Pipeline, PipelineMember, Stage, TokenScope, User

POSITION_STEP = 10  # gaps between positions, so inserting between two stages rarely renumbers anything


def list_pipelines(
    session: Session, caller: Caller, cursor: str | None, limit: int
) -> tuple[list[Pipeline], str | None]:
    query = select(Pipeline).where(Pipeline.account_id == caller.account_id, pipeline_visible(caller))
    rows = session.scalars(paginate(query, Pipeline.created_at, Pipeline.id, cursor, limit)).all()
    return page_rows(rows, limit, lambda p: (p.created_at, p.id))


def get_pipeline(session: Session, caller: Caller, pipeline_id: uuid.UUID, *, for_update: bool = False) -> Pipeline:
    query = select(Pipeline).where(
        Pipeline.account_id == caller.account_id, Pipeline.id == pipeline_id, pipeline_visible(caller)
    )
    pipeline = session.scalars(query.with_for_update() if for_update else query).one_or_none()
    if pipeline is None:
        raise not_found("Pipeline")
    return pipeline


def stages_of(session: Session, pipelines: Sequence[Pipeline]) -> dict[uuid.UUID, list[Stage]]:
    stages: dict[uuid.UUID, list[Stage]] = defaultdict(list)
    for stage in session.scalars(
        select(Stage)
        .where(Stage.pipeline_id.in_([p.id for p in pipelines]))
        .order_by(Stage.position, Stage.created_at, Stage.id)
    ):
        stages[stage.pipeline_id].append(stage)
    return stages


def create_pipeline(session: Session, caller: Caller, body: PipelineIn) -> Pipeline:
    pipeline = Pipeline(account_id=caller.account_id, name=body.name)
    session.add(pipeline)
    session.flush()
    for index, name in enumerate(body.stages or STANDARD_STAGES):
        session.add(
            Stage(account_id=caller.account_id, pipeline_id=pipeline.id, name=name, position=index * POSITION_STEP)
        )
    session.flush()
    return pipeline


def members_of(session: Session, pipelines: Sequence[Pipeline]) -> dict[uuid.UUID, list[str]]:
    members: dict[uuid.UUID, list[str]] = defaultdict(list)
    for row in session.execute(
        select(PipelineMember.pipeline_id, PipelineMember.user_id)
        .where(PipelineMember.pipeline_id.in_([p.id for p in pipelines]))
        .order_by(PipelineMember.user_id)
    ):
        members[row.pipeline_id].append(str(row.user_id))
    return members


def set_access(session: Session, caller: Caller, pipeline_id: uuid.UUID, body: PipelineAccessIn) -> Pipeline:
    """Who may see and edit the pipeline's deals. Deciding who sees what is an administrator's job."""
    if not caller.allows(TokenScope.admin):
        raise insufficient_scope(TokenScope.admin)
    pipeline = get_pipeline(session, caller, pipeline_id, for_update=True)
    members = {
        reference(session, caller, User, user_id, f"member_user_ids.{index}")
        for index, user_id in enumerate(body.member_user_ids)
    }
    pipeline.restricted = body.restricted
    session.execute(delete(PipelineMember).where(PipelineMember.pipeline_id == pipeline.id))
    for user_id in sorted(m for m in members if m is not None):
        session.add(PipelineMember(account_id=caller.account_id, pipeline_id=pipeline.id, user_id=user_id))
    session.flush()
    return pipeline


def update_pipeline(session: Session, caller: Caller, pipeline_id: uuid.UUID, body: PipelinePatch) -> Pipeline:
    pipeline = get_pipeline(session, caller, pipeline_id, for_update=True)
    if "name" in body.model_fields_set:
        if body.name is None:
            raise invalid("name", "must not be null", "A pipeline needs a name.")
        pipeline.name = body.name
    return pipeline


def delete_pipeline(session: Session, caller: Caller, pipeline_id: uuid.UUID) -> None:
    pipeline = get_pipeline(session, caller, pipeline_id, for_update=True)
    if session.scalar(
        select(func.count()).select_from(Deal).where(Deal.pipeline_id == pipeline.id, Deal.deleted_at.is_(None))
    ):
        raise conflict("Deals are in this pipeline; move or delete them first.")
    # Deleted deals keep their history; they just no longer point at the pipeline (and its stages).
    session.execute(update(Deal).where(Deal.pipeline_id == pipeline.id).values(pipeline_id=None, stage_id=None))
    session.delete(pipeline)


def get_stage(
    session: Session, caller: Caller, pipeline_id: uuid.UUID, stage_id: uuid.UUID, *, for_update: bool = False
) -> Stage:
    get_pipeline(session, caller, pipeline_id)
    query = select(Stage).where(
        Stage.account_id == caller.account_id, Stage.pipeline_id == pipeline_id, Stage.id == stage_id
    )
    stage = session.scalars(query.with_for_update() if for_update else query).one_or_none()
    if stage is None:
        raise not_found("Stage")
    return stage


def add_stage(session: Session, caller: Caller, pipeline_id: uuid.UUID, body: StageIn) -> Stage:
    pipeline = get_pipeline(session, caller, pipeline_id, for_update=True)
    position = body.position
    if position is None:
        last = session.scalar(select(func.max(Stage.position)).where(Stage.pipeline_id == pipeline.id))
        position = 0 if last is None else last + POSITION_STEP
    stage = Stage(
        account_id=caller.account_id,
        pipeline_id=pipeline.id,
        name=body.name,
        position=position,
        probability=body.probability,
    )
    session.add(stage)
    session.flush()
    return stage


def update_stage(
    session: Session, caller: Caller, pipeline_id: uuid.UUID, stage_id: uuid.UUID, body: StagePatch
) -> Stage:
    stage = get_stage(session, caller, pipeline_id, stage_id, for_update=True)
    if "name" in body.model_fields_set:
        if body.name is None:
            raise invalid("name", "must not be null", "A stage needs a name.")
        stage.name = body.name
    if body.position is not None:
        stage.position = body.position
    if "probability" in body.model_fields_set:
        stage.probability = body.probability
    return stage


def delete_stage(session: Session, caller: Caller, pipeline_id: uuid.UUID, stage_id: uuid.UUID) -> None:
    stage = get_stage(session, caller, pipeline_id, stage_id, for_update=True)
    if session.scalar(
        select(func.count()).select_from(Deal).where(Deal.stage_id == stage.id, Deal.deleted_at.is_(None))
    ):
        raise conflict("Deals are in this stage; move them first.")
    session.execute(update(Deal).where(Deal.stage_id == stage.id).values(stage_id=None))
    session.delete(stage)
