"""Real processes for the tests and the benchmarks alike: Redis and PostgreSQL schemas,
the sandbox, a whole gbq stack, and generated scenarios with their expected wallets. Not
installed: it is how the project proves and measures itself, not part of what it ships."""
