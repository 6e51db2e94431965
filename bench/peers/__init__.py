"""jobtrail beside Celery, RQ, Dramatiq and Procrastinate: one run, equal executors, one table."""
