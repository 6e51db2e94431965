"""Optional integrations: Celery, and rate-limited calls from jobs."""
