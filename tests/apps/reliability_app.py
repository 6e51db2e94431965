"""The app the reliability suite's processes load:
``jobtrail worker --app tests.apps.reliability_app:tracker`` (and ``jobtrail serve``).

Its store is ``JOBTRAIL_DATABASE_URL``; its kinds are in ``tests.apps.reliability_handlers``.
"""

from __future__ import annotations

from jobtrail import Tracker
from tests.apps.reliability_handlers import register

tracker = register(Tracker())
