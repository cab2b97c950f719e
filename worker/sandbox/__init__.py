"""A local Gameball for tests, benchmarks and the demo (DESIGN §7). See ``worker.sandbox.app``."""
