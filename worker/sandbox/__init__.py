"""A local Gameball for tests, benchmarks and the demo (docs/sandbox.md): it imports
nothing of the client (an import contract). See ``worker.sandbox.app``."""
