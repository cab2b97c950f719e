"""What operators use: the ``gbq`` CLI, the console, status, metrics, repair and the demo.
Nothing in the rest of the worker imports from here."""
