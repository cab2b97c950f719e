"""Talking to Gameball: the API versions, the payloads, the HTTP client, ``classify()``
(every answer's meaning, in one table) and the record reads."""
