"""The caller's account and the rules the matcher applies to its mail."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from services.api.common import Schema
from services.api.deps import AdminCaller, CurrentCaller, DbSession
from shared.account_settings import AccountSettings
from shared.models import Account

router = APIRouter(prefix="/v1/account", tags=["account"])


class AccountOut(BaseModel):
    id: str
    name: str
    settings: AccountSettings = Field(description="How the matcher treats this account's mail.")


class AccountSettingsPatch(Schema):
    """Only the fields sent change; they apply to mail processed (or reprocessed) from now on. Text with NUL
    characters is refused (Postgres cannot store it)."""

    fold_subaddresses: bool | None = None
    max_people_per_message: int | None = Field(default=None, ge=0, le=1000)
    create_organizations: bool | None = None
    internal_domains: list[str] | None = Field(default=None, max_length=500)
    blocklist: list[str] | None = Field(default=None, max_length=5000)
    ask_before_sending: bool | None = None
    unauthenticated_sender_domains: list[str] | None = Field(default=None, max_length=500)


@router.get("", response_model=AccountOut)
def get_account(caller: CurrentCaller, session: DbSession) -> AccountOut:
    account = session.get_one(Account, caller.account_id)
    return AccountOut(id=str(account.id), name=account.name, settings=AccountSettings.of(account.settings))


@router.patch("", response_model=AccountOut)
def update_settings(body: AccountSettingsPatch, caller: AdminCaller, session: DbSession) -> AccountOut:
    account = session.get_one(Account, caller.account_id)
    merged = AccountSettings.of(account.settings).model_copy(update=body.model_dump(exclude_none=True))
    normalized = AccountSettings.model_validate(
        {
            **merged.model_dump(),
            "internal_domains": sorted({d.strip().lower().lstrip("@") for d in merged.internal_domains if d.strip()}),
            "blocklist": sorted({e.strip().lower() for e in merged.blocklist if e.strip()}),
            "unauthenticated_sender_domains": sorted(
                {d.strip().lower().lstrip("@") for d in merged.unauthenticated_sender_domains if d.strip()}
            ),
        }
    )
    account.settings = normalized.model_dump()
    return AccountOut(id=str(account.id), name=account.name, settings=normalized)
