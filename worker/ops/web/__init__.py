"""``gbq web``: the operator console in the browser (Starlette, server-rendered pages).

    app.py        routes: overview, dead letters (list, detail, actions), orders, search
    security.py   who may bind where, basic auth, CSRF tokens, allowed Host headers (pure)
    readings.py   what each page shows, read from the ledger and Redis
    chart.py      the overview's SVG chart (pure)

Every action goes through the same code as ``gbq dlq`` (``worker.ops.repair``).
"""
