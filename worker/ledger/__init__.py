"""The ledger: the SQL source of truth for every event's state and Gameball's answers."""
