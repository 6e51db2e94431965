"""The tracker `jobtrail worker --app bench.peers.jobtrail_app:tracker` runs in the benchmark."""

from bench.peers.sql_peers import build_tracker

tracker = build_tracker()
