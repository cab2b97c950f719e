"""Pure decisions over values: no I/O, no settings, no SQLAlchemy (the import contracts in
pyproject.toml hold this). Each module is one rule; docs/architecture.md shows them all."""
