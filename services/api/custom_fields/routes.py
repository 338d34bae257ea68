"""Custom field definitions. Values are set on the records themselves (`custom_fields` in their bodies)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from services.api.common import Page
from services.api.custom_fields import service
from services.api.custom_fields.schemas import CustomFieldIn, CustomFieldOut, CustomFieldPatch
from services.api.deps import CurrentCaller, DbSession, parse_id
from shared.models import CustomFieldDefinition, CustomFieldEntity

router = APIRouter(prefix="/v1/custom-fields", tags=["custom fields"])


@router.get("", response_model=Page[CustomFieldOut])
def list_custom_fields(
    caller: CurrentCaller, session: DbSession, entity: CustomFieldEntity | None = None
) -> Page[CustomFieldOut]:
    """Every definition of the account (a short list: one page), by entity and key."""
    rows = service.list_definitions(session, caller.account_id, entity)
    return Page[CustomFieldOut](data=[_out(d) for d in rows], next_cursor=None)


@router.post("", response_model=CustomFieldOut, status_code=status.HTTP_201_CREATED)
def create_custom_field(body: CustomFieldIn, caller: CurrentCaller, session: DbSession) -> CustomFieldOut:
    return _out(service.create_definition(session, caller.account_id, body))


@router.get("/{field_id}", response_model=CustomFieldOut)
def get_custom_field(field_id: str, caller: CurrentCaller, session: DbSession) -> CustomFieldOut:
    return _out(service.get_definition(session, caller.account_id, parse_id(field_id, "Custom field")))


@router.patch("/{field_id}", response_model=CustomFieldOut)
def update_custom_field(
    field_id: str, body: CustomFieldPatch, caller: CurrentCaller, session: DbSession
) -> CustomFieldOut:
    """Rename it or change its options; key and type stay (they are how values are stored and filtered)."""
    return _out(service.update_definition(session, caller.account_id, parse_id(field_id, "Custom field"), body))


@router.delete("/{field_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_custom_field(field_id: str, caller: CurrentCaller, session: DbSession) -> Response:
    """Delete the field and every record's value for it."""
    service.delete_definition(session, caller.account_id, parse_id(field_id, "Custom field"))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _out(definition: CustomFieldDefinition) -> CustomFieldOut:
    return CustomFieldOut(
        id=str(definition.id),
        entity=definition.entity,
        key=definition.key,
        label=definition.label,
        type=definition.type,
        options=list(definition.options),
        created_at=definition.created_at,
    )
