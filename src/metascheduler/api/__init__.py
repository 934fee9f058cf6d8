"""The API and dashboard service (FastAPI): a read API over the store, signed provider
heartbeats, Prometheus metrics and a web dashboard, all served by one app."""

from .app import create_app
from .service import run_api_command
from .settings import ApiSettings

__all__ = ["ApiSettings", "create_app", "run_api_command"]
