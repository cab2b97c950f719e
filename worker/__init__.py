"""gameball-queue's worker side: settings, the Gameball client, delivery and the CLI.

Kept free of imports so that ``import worker.settings`` stays cheap.
"""
