"""Where the servers are: the configured ones, or the embedded ones under the data directory."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from shared.migrate import upgrade
from shared.settings import Settings


class ServersNotConfiguredError(RuntimeError):
    """A server URL is unset and this install has no embedded servers (the production image has none, on purpose:
    a container that quietly ran its own empty Postgres would accept mail nobody else can see)."""

    def __init__(self, needs_database: bool, needs_redis: bool) -> None:
        missing = [
            name
            for name, needed in (("MAILROOM_DATABASE_URL", needs_database), ("MAILROOM_REDIS_URL", needs_redis))
            if needed
        ]
        super().__init__(
            f"{' and '.join(missing)} must be set: this install has no embedded servers"
            " (for a laptop, install the `embedded` extra: pip install 'mailroom[embedded]')"
        )


@contextlib.contextmanager
def resolved_servers(settings: Settings, *, with_redis: bool = True) -> Iterator[Settings]:
    """The settings with both URLs filled in; embedded servers run (and are migrated) for the block's length."""
    needs_redis = with_redis and settings.redis_url is None
    if settings.database_url is not None and not needs_redis:
        yield settings
        return
    # Imported only when needed: pgserver's import alone warns about runtime directories on some machines.
    try:
        from shared.embedded import embedded_servers
    except ModuleNotFoundError as missing:
        raise ServersNotConfiguredError(settings.database_url is None, needs_redis) from missing

    with embedded_servers(settings.data_dir, with_redis=needs_redis) as embedded:
        resolved = settings.model_copy(
            update={
                "database_url": settings.database_url or embedded.database_url,
                "redis_url": settings.redis_url or embedded.redis_url,
            }
        )
        if settings.database_url is None:
            upgrade(resolved.require_database_url())
        yield resolved
