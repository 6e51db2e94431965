"""Tracing message-driven scrape jobs: a trace per broker message, keyed by its message id."""
