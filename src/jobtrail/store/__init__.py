"""Persistence of job records: the schema, its migrations and the ``Store``."""
