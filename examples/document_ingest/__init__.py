"""Document ingestion on Celery with a job-management API, tracked by jobtrail."""
