"""The `mailroom` command: one subcommand per service, plus `up`, `migrate` and admin commands."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from typing import TYPE_CHECKING

from services.runtime import ServersNotConfiguredError, resolved_servers
from shared.logging import configure_logging
from shared.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailroom", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="run everything on the embedded default (or the configured servers)")
    commands.add_parser("gateway", help="run the SMTP gateway")
    worker = commands.add_parser("worker", help="run matcher workers")
    worker.add_argument("--processes", type=int, default=None, help="worker processes (MAILROOM_WORKER_PROCESSES)")
    commands.add_parser("api", help="run the HTTP API")
    commands.add_parser("migrate", help="bring the database schema up to date")
    commands.add_parser("sweep", help="enqueue every accepted but unprocessed message now")

    accounts = commands.add_parser("accounts", help="manage accounts").add_subparsers(dest="action", required=True)
    create_account = accounts.add_parser("create", help="create an account and its first API token")
    create_account.add_argument("name")

    users = commands.add_parser("users", help="manage users").add_subparsers(dest="action", required=True)
    create_user = users.add_parser("create", help="create a user with a Smart-BCC address")
    create_user.add_argument("account_id")
    create_user.add_argument("email")
    create_user.add_argument("--name", default=None)

    tokens = commands.add_parser("tokens", help="manage API tokens").add_subparsers(dest="action", required=True)
    create_token = tokens.add_parser("create", help="create an API token (printed once; only its hash is kept)")
    create_token.add_argument("account_id")
    create_token.add_argument("--scope", choices=["read", "write", "admin"], default="read")
    create_token.add_argument("--user", dest="user_id", default=None, help="tie the token to this user of the account")
    create_token.add_argument("--name", default=None, help="a label for people")
    revoke_token = tokens.add_parser("revoke", help="revoke an API token at once")
    revoke_token.add_argument("token_id")

    transfer_kinds = ["persons", "organizations", "deals", "leads"]
    import_csv = commands.add_parser("import", help="import records from a CSV file (see the README for the columns)")
    import_csv.add_argument("kind", choices=transfer_kinds)
    import_csv.add_argument("file", help="a UTF-8 CSV file with a header line, or - for standard input")
    import_csv.add_argument("--account", required=True, help="the account to import into")
    import_csv.add_argument("--dry-run", action="store_true", help="check every row and report; change nothing")
    import_csv.add_argument("--no-progress", action="store_true", help="no progress bar on standard error")
    export_csv = commands.add_parser("export", help="export records as CSV (the columns `import` reads)")
    export_csv.add_argument("kind", choices=transfer_kinds)
    export_csv.add_argument("--account", required=True, help="the account to export from")
    export_csv.add_argument("--output", "-o", default="-", help="file to write (default: standard output)")

    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging(args.command, level=settings.log_level, log_format=settings.log_format)

    try:
        return _run(args, settings)
    except ServersNotConfiguredError as error:
        print(f"mailroom: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "up":
        from services.up import run_up

        return run_up(settings)
    if args.command in ("accounts", "users", "tokens"):
        return _admin(args, settings)
    if args.command in ("import", "export"):
        from services.transfer_cli import run_transfer

        return run_transfer(args, settings)
    # The API enqueues too (reprocessing held mail, webhook deliveries) and reports Redis in /readyz.
    with resolved_servers(settings, with_redis=args.command in ("gateway", "worker", "sweep", "api")) as resolved:
        return _service(args, resolved)


def _service(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "gateway":
        from services.smtp_gateway.server import run as run_gateway

        run_gateway(settings)
    elif args.command == "worker":
        from services.matcher.worker import run as run_worker

        run_worker(settings, args.processes or settings.worker_processes)
    elif args.command == "api":
        from services.api.server import run as run_api

        run_api(settings)
    elif args.command == "migrate":
        from shared.migrate import upgrade

        upgrade(settings.require_database_url())
        _print({"migrated": True})
    elif args.command == "sweep":
        from services.matcher.sweep import sweep
        from shared.broker import make_broker
        from shared.db import make_engine, make_session_factory

        engine = make_engine(settings.require_database_url())
        broker = make_broker(settings.require_redis_url(), settings.queue_namespace)
        _print(
            {
                "enqueued": sweep(
                    make_session_factory(engine),
                    broker,
                    grace_seconds=0,
                    max_attempts=settings.process_max_attempts,
                    ids_per_message=settings.matcher_batch_size,
                )
            }
        )
    return 0


def _admin(args: argparse.Namespace, settings: Settings) -> int:
    from shared import directory
    from shared.db import make_engine, make_session_factory, transaction

    with resolved_servers(settings, with_redis=False) as resolved:
        engine = make_engine(resolved.require_database_url(), pool_size=1)
        try:
            with transaction(make_session_factory(engine)) as session:
                if args.command == "accounts":
                    account = directory.create_account(session, args.name)
                    _print({"account_id": str(account.account_id), "api_token": account.api_token})
                elif args.command == "tokens":
                    return _tokens(args, session)
                else:
                    try:
                        account_id = uuid.UUID(args.account_id)
                        user = directory.create_user(session, account_id, args.email, args.name)
                    except (ValueError, LookupError):
                        print(f"mailroom: no account {args.account_id}", file=sys.stderr)
                        return 2
                    _print(
                        {
                            "user_id": str(user.id),
                            "email": user.email,
                            "bcc_address": directory.bcc_address(user, resolved.bcc_domain),
                        }
                    )
        finally:
            engine.dispose()
    return 0


def _tokens(args: argparse.Namespace, session: Session) -> int:
    from shared import directory
    from shared.models import TokenScope

    if args.action == "revoke":
        try:
            token = directory.revoke_token(session, uuid.UUID(args.token_id))
        except ValueError:
            token = None
        if token is None:
            print(f"mailroom: no token {args.token_id}", file=sys.stderr)
            return 2
        _print({"token_id": str(token.id), "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None})
        return 0
    try:
        account_id = uuid.UUID(args.account_id)
        user_id = None if args.user_id is None else uuid.UUID(args.user_id)
        row, secret = directory.issue_token(
            session, account_id, TokenScope(args.scope), user_id=user_id, name=args.name
        )
    except (ValueError, LookupError):
        print(f"mailroom: no account {args.account_id} (or no such user in it)", file=sys.stderr)
        return 2
    _print(
        {
            "token_id": str(row.id),
            "api_token": secret,
            "scope": row.scope,
            "user_id": None if row.user_id is None else str(row.user_id),
        }
    )
    return 0


def _print(payload: dict[str, object]) -> None:
    print(json.dumps(payload), flush=True)


if __name__ == "__main__":
    sys.exit(main())
