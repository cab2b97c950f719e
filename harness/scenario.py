"""The event stream generator now lives in the product (the demo uses it too)."""

from worker.sandbox.stream import START, Scenario, generate, wallets

__all__ = ["START", "Scenario", "generate", "wallets"]
