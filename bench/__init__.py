"""`python -m bench`: push mail through real SMTP into Mailroom and, for reference, into bare sinks.

Prints accepted messages per second per target, the ratio to a bare aiosmtpd server on the same machine, and how
long each message takes from its `250` until `GET /v1/messages` shows it.
"""
