"""The app the worker processes run: ``jobtrail worker --app tests.apps.worker_app:tracker``.

Its store is ``JOBTRAIL_DATABASE_URL``; with ``WORKER_APP_HELLO=1`` each worker submits a
``hello`` job when it starts, so a test can wait until every process is up.
"""

from __future__ import annotations

import os

from jobtrail import Tracker
from tests.apps.handlers import register

tracker = register(Tracker())

if os.environ.get("WORKER_APP_HELLO") == "1":
    tracker.on_startup("hello")
