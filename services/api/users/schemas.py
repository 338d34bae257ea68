from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, EmailStr, Field

from services.api.common import Schema


class AliasOut(BaseModel):
    id: str
    address: str
    verified: bool = Field(description="Only verified aliases make mail count as sent by the user.")
    verified_at: datetime | None
    confirmation_sent_at: datetime | None = Field(
        default=None, description="When the last confirmation link was mailed to the address (null: never)."
    )
    created_at: datetime


class AliasConfirmed(BaseModel):
    address: str
    verified_at: datetime


class UserOut(BaseModel):
    id: str
    email: str
    name: str | None
    bcc_address: str | None = Field(
        description="The user's Smart-BCC address; rotate it if it leaked. Shown only to the user's own tokens and "
        "to account-wide admin tokens (null otherwise): whoever knows it can put mail into the user's CRM."
    )
    aliases: list[AliasOut]
    created_at: datetime


class UserIn(Schema):
    email: EmailStr
    name: str | None = Field(default=None, max_length=200)


class UserPatch(Schema):
    name: str | None = Field(default=None, max_length=200)


class AliasIn(Schema):
    address: EmailStr
    verified: bool = Field(
        default=False, description="Mark it verified at once (the admin vouches for it); else verify it later."
    )
