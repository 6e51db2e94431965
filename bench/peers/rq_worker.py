"""An `rq worker` that imports the job's module first, as RQ's performance notes advise, so each
forked work horse starts with it loaded."""

from rq import Worker

from bench.peers.redis_peer import client
from bench.peers.rq_peer import rq_queue

if __name__ == "__main__":
    Worker([rq_queue], connection=client).work(logging_level="WARNING")
