"""Small jobtrail apps that the worker-process tests run with the real CLI."""
