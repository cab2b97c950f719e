"""``python -m worker`` runs the same CLI as ``gbq``."""

from worker.cli import main

main()
