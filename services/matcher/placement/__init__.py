"""The placement layer: where a parsed message goes in the account's CRM.

Threads, people, organizations and deals, each owning its lock names, queries and the vocabulary it writes.
"""
