"""The reference TDM API server: a Bottle app over SQLite that asks a packager for dumps through tdm_messaging."""

from examples.server.app import create_app
from examples.server.settings import ApiKeySpec, Settings

__all__ = ["ApiKeySpec", "Settings", "create_app"]
