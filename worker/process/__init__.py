"""The Celery worker process: the app, its one task, the screened transport, the runtime
each pool process builds, and its logging."""
