"""``python -m worker`` runs the same CLI as ``gbq``."""

from worker.ops.cli import main

main()
