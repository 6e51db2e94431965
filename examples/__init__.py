"""Runnable apps that rebuild the services jobtrail was born from, each on jobtrail."""
