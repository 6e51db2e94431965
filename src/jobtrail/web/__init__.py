"""The web edge: the REST API router, its app, auth, streams and metrics (needs FastAPI)."""

from jobtrail.web.app import create_app
from jobtrail.web.auth import Principal
from jobtrail.web.router import create_router

__all__ = ["Principal", "create_app", "create_router"]
