"""The store: SQLite (WAL) behind the daemon and the admin CLI: lists, consent, send history, audit, the change
log, the daemon's one write path and its upkeep, and loading the Index."""
