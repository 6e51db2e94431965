"""The app the API end-to-end tests serve: ``jobtrail serve --app tests.apps.api_app:tracker``.

Its store is ``JOBTRAIL_DATABASE_URL``; its kinds are in ``tests.apps.api_handlers``.
"""

from __future__ import annotations

from jobtrail import Tracker
from tests.apps.api_handlers import register

tracker = register(Tracker())
