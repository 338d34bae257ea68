from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from services.api.common import Schema
from shared.models import TokenScope


class TokenIn(Schema):
    scope: TokenScope = Field(
        description="`read`: GET only. `write`: also CRM records, the deal chooser, held mail. "
        "`admin`: also tokens, users and webhooks."
    )
    user_id: str | None = Field(default=None, description="Tie the token to one user of the account.")
    name: str | None = Field(default=None, max_length=200)


class TokenOut(BaseModel):
    id: str
    scope: TokenScope
    user_id: str | None
    name: str | None
    created_at: datetime
    revoked_at: datetime | None


class NewTokenOut(TokenOut):
    token: str = Field(description="The secret. Shown only in this response; Mailroom keeps only its hash.")
