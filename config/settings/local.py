"""Settings for running the service (default for manage.py, gunicorn and Celery)."""

from .api import *  # noqa: F403
from .base import *  # noqa: F403
from .database import *  # noqa: F403
from .logs import *  # noqa: F403
from .tasks import *  # noqa: F403
