"""Listing sync: per-listing insights for host accounts, synced by jobtrail jobs."""
