"""The web edge: the REST API router, its app, auth, streams, metrics and dashboard (needs the
``web`` extra)."""

from jobtrail.extras import require

require("web", "jobtrail.web")  # before anything imports FastAPI: a one-line error instead

from jobtrail.web.api import create_router  # noqa: E402
from jobtrail.web.app import create_app  # noqa: E402
from jobtrail.web.auth import Principal  # noqa: E402

__all__ = ["Principal", "create_app", "create_router"]
