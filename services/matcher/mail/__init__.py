"""The pure layer: everything the matcher learns from a message's bytes alone, without a database.

Parsing (headers, addresses, MIME, charsets, HTML to text), classification, forwarded originals, quotes and
subjects. Nothing here opens a connection, so it can run in a child process under a time and memory budget.
"""
