"""Pipelines and their ordered stages."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.api.crm.schemas import PipelineIn, PipelinePatch, StageIn, StagePatch
from services.api.deps import Caller
from services.api.pagination import page_rows, paginate
from services.api.problems import conflict, invalid, not_found
from shared.models import Deal, Pipeline, Stage

POSITION_STEP = 10  # gaps between positions, so inserting between two stages rarely renumbers anything


def list_pipelines(
    session: Session, caller: Caller, cursor: str | None, limit: int
) -> tuple[list[Pipeline], str | None]:
    query = select(Pipeline).where(Pipeline.account_id == caller.account_id)
    rows = session.scalars(paginate(query, Pipeline.created_at, Pipeline.id, cursor, limit)).all()
    return page_rows(rows, limit, lambda p: (p.created_at, p.id))


def get_pipeline(session: Session, caller: Caller, pipeline_id: uuid.UUID, *, for_update: bool = False) -> Pipeline:
    query = select(Pipeline).where(Pipeline.account_id == caller.account_id, Pipeline.id == pipeline_id)
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
    for index, name in enumerate(body.stages):
        session.add(
            Stage(account_id=caller.account_id, pipeline_id=pipeline.id, name=name, position=index * POSITION_STEP)
        )
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
    if session.scalar(select(func.count()).select_from(Deal).where(Deal.pipeline_id == pipeline.id)):
        raise conflict("Deals are in this pipeline; move or delete them first.")
    session.delete(pipeline)


def get_stage(
    session: Session, caller: Caller, pipeline_id: uuid.UUID, stage_id: uuid.UUID, *, for_update: bool = False
) -> Stage:
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
    stage = Stage(account_id=caller.account_id, pipeline_id=pipeline.id, name=body.name, position=position)
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
    return stage


def delete_stage(session: Session, caller: Caller, pipeline_id: uuid.UUID, stage_id: uuid.UUID) -> None:
    stage = get_stage(session, caller, pipeline_id, stage_id, for_update=True)
    if session.scalar(select(func.count()).select_from(Deal).where(Deal.stage_id == stage.id)):
        raise conflict("Deals are in this stage; move them first.")
    session.delete(stage)
