"""Coordination through Redis: the delivery queue, the rate limits, the shared circuit
breaker, worker liveness, and what counts as a service being down."""
