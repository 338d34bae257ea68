"""Custom field definitions, and the one place values are checked against them (API writes, CSV import, filters).

Values live in each record's `custom_fields` JSON object, by key: text and option as strings, numbers as JSON
numbers, dates as `YYYY-MM-DD` strings (which sort and compare as dates). A filter is a JSON containment test, so
`custom.plan=Pro` and `custom.seats=10` mean equality with the value read as the field's type.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from services.api.custom_fields.schemas import CustomFieldIn, CustomFieldPatch
from services.api.problems import Problem, conflict, invalid, not_found
from shared.models import CustomFieldDefinition, CustomFieldEntity, CustomFieldType, Deal, Organization, Person

FILTER_PREFIX = "custom."
MAX_TEXT = 10_000


MODELS: dict[CustomFieldEntity, type[Deal] | type[Person] | type[Organization]] = {
    CustomFieldEntity.deal: Deal,
    CustomFieldEntity.person: Person,
    CustomFieldEntity.organization: Organization,
}


class BadValueError(ValueError):
    """A value that does not fit its field; the message says why, in words for people."""


def definitions(session: Session, account_id: uuid.UUID, entity: CustomFieldEntity) -> dict[str, CustomFieldDefinition]:
    rows = session.scalars(
        select(CustomFieldDefinition)
        .where(CustomFieldDefinition.account_id == account_id, CustomFieldDefinition.entity == entity)
        .order_by(CustomFieldDefinition.key)
    ).all()
    return {row.key: row for row in rows}


def list_definitions(
    session: Session, account_id: uuid.UUID, entity: CustomFieldEntity | None
) -> list[CustomFieldDefinition]:
    query = select(CustomFieldDefinition).where(CustomFieldDefinition.account_id == account_id)
    if entity is not None:
        query = query.where(CustomFieldDefinition.entity == entity)
    return list(session.scalars(query.order_by(CustomFieldDefinition.entity, CustomFieldDefinition.key)).all())


def get_definition(
    session: Session, account_id: uuid.UUID, definition_id: uuid.UUID, *, for_update: bool = False
) -> CustomFieldDefinition:
    query = select(CustomFieldDefinition).where(
        CustomFieldDefinition.account_id == account_id, CustomFieldDefinition.id == definition_id
    )
    found = session.scalars(query.with_for_update() if for_update else query).one_or_none()
    if found is None:
        raise not_found("Custom field")
    return found


def create_definition(session: Session, account_id: uuid.UUID, body: CustomFieldIn) -> CustomFieldDefinition:
    options = _options(body.type, body.options)
    if body.key in definitions(session, account_id, body.entity):
        raise conflict(f"There is already a {body.entity} field `{body.key}`.")
    definition = CustomFieldDefinition(
        account_id=account_id, entity=body.entity, key=body.key, label=body.label, type=body.type, options=options
    )
    session.add(definition)
    session.flush()
    session.refresh(definition)
    return definition


def update_definition(
    session: Session, account_id: uuid.UUID, definition_id: uuid.UUID, body: CustomFieldPatch
) -> CustomFieldDefinition:
    definition = get_definition(session, account_id, definition_id, for_update=True)
    if body.label is not None:
        definition.label = body.label
    if body.options is not None:
        definition.options = _options(definition.type, body.options)
    session.flush()
    return definition


def delete_definition(session: Session, account_id: uuid.UUID, definition_id: uuid.UUID) -> None:
    """The field goes, and with it every record's value for it."""
    definition = get_definition(session, account_id, definition_id, for_update=True)
    model = MODELS[definition.entity]
    session.execute(
        update(model)
        .where(model.account_id == account_id, model.custom_fields.has_key(definition.key))
        .values(custom_fields=model.custom_fields - definition.key)
    )
    session.delete(definition)


def _options(field_type: CustomFieldType, options: list[str]) -> list[str]:
    cleaned = list(dict.fromkeys(o.strip() for o in options if o.strip()))
    if field_type == CustomFieldType.option and not cleaned:
        raise invalid("options", "an option field needs at least one option")
    if field_type != CustomFieldType.option and cleaned:
        raise invalid("options", "only option fields have options")
    if any(len(o) > 200 for o in cleaned):
        raise invalid("options", "an option is at most 200 characters")
    return cleaned


def coerce(definition: CustomFieldDefinition, value: Any) -> Any:
    """The value as stored for the field's type, from JSON or from CSV text; raises BadValueError."""
    if definition.type == CustomFieldType.number:
        if isinstance(value, bool):
            raise BadValueError("must be a number")
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise BadValueError("must be a number") from None
        if not number.is_finite() or abs(number) >= Decimal("1e15"):
            raise BadValueError("must be a finite number below 10^15")
        return int(number) if number == number.to_integral_value() else float(number)
    if not isinstance(value, str):
        raise BadValueError(f"must be a {'date' if definition.type == CustomFieldType.date else 'string'}")
    text = value.strip()
    if definition.type == CustomFieldType.date:
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            raise BadValueError("must be a date like 2026-12-31") from None
    if definition.type == CustomFieldType.option:
        if text not in definition.options:
            raise BadValueError(f"must be one of: {', '.join(definition.options)}")
        return text
    if len(text) > MAX_TEXT:
        raise BadValueError(f"must be at most {MAX_TEXT} characters")
    return text


def merged_values(
    known: Mapping[str, CustomFieldDefinition], current: Mapping[str, Any], given: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """`current` with `given` applied (null or "" removes a value), and what was wrong, by key."""
    values = dict(current)
    errors: dict[str, str] = {}
    for key, value in given.items():
        definition = known.get(key)
        if definition is None:
            errors[key] = "no such custom field"
            continue
        if value is None or (isinstance(value, str) and not value.strip()):
            values.pop(key, None)
            continue
        try:
            values[key] = coerce(definition, value)
        except BadValueError as exc:
            errors[key] = str(exc)
    return values, errors


def apply(
    session: Session,
    account_id: uuid.UUID,
    entity: CustomFieldEntity,
    record: Deal | Person | Organization,
    given: Mapping[str, Any] | None,
) -> None:
    """Set the record's values from a request body (only the keys sent change); a 422 names each bad key."""
    if given is None:
        return
    values, errors = merged_values(definitions(session, account_id, entity), record.custom_fields or {}, given)
    if errors:
        raise Problem(
            422,
            "validation",
            "The request is not valid",
            "Some custom field values do not fit their fields.",
            errors=[{"field": f"custom_fields.{key}", "message": message} for key, message in sorted(errors.items())],
        )
    record.custom_fields = values


def filters(
    session: Session, account_id: uuid.UUID, entity: CustomFieldEntity, params: Mapping[str, str]
) -> list[ColumnElement[bool]]:
    """Conditions for the `custom.<key>=value` query parameters of a list."""
    wanted = {name[len(FILTER_PREFIX) :]: value for name, value in params.items() if name.startswith(FILTER_PREFIX)}
    if not wanted:
        return []
    known = definitions(session, account_id, entity)
    model = MODELS[entity]
    conditions: list[ColumnElement[bool]] = []
    for key, raw in wanted.items():
        definition = known.get(key)
        if definition is None:
            raise invalid(f"query.custom.{key}", "no such custom field")
        try:
            value = coerce(definition, raw)
        except BadValueError as exc:
            raise invalid(f"query.custom.{key}", str(exc)) from None
        conditions.append(model.custom_fields.contains({key: value}))
    return conditions


def text_of(value: Any) -> str:
    """A stored value as CSV text."""
    if value is None:
        return ""
    return str(value)
