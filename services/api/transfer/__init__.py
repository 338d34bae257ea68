"""CSV import and export of persons, organizations, deals and leads (the API and the `mailroom` CLI share it)."""
