"""The flows that move events: delivery (one message, at most one Gameball call) and the
scheduler's sweeps, with the redemptions and reconciliation they use."""
