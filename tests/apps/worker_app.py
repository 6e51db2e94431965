"""The app the worker processes run: ``jobtrail worker --app tests.apps.worker_app:tracker``.

Its store is ``JOBTRAIL_DATABASE_URL``; with ``WORKER_APP_HELLO=1`` each worker submits a
``hello`` job when it starts (owned by its process id: startup jobs are once per start
window and owner), so a test can wait until every process is up; with
``WORKER_APP_DEPLOY=1`` the deployment's workers share one ``hello`` job owned by
``deployment``.
"""

from __future__ import annotations

import os

from jobtrail import Tracker
from tests.apps.handlers import register

tracker = register(Tracker())

if os.environ.get("WORKER_APP_HELLO") == "1":
    tracker.on_startup("hello", owner=f"process-{os.getpid()}")
if os.environ.get("WORKER_APP_DEPLOY") == "1":
    tracker.on_startup("hello", owner="deployment")
