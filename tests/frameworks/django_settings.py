"""Django settings for :mod:`frameworks.django_app` and :mod:`frameworks.channels_app`.

The Channels layer is channels_redis on the redis-server the test started, whose URL comes in
``ASGIWS_TEST_REDIS_URL``; without it (plain Django) there is no channel layer.
"""

from __future__ import annotations

import os
from typing import Any

DEBUG = False
SECRET_KEY = "asgiws-tests-only"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "frameworks.django_app"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES: dict[str, Any] = {}
USE_TZ = True
LOGGING_CONFIG = None  # asgiws's log lines are what the test reads

CHANNEL_LAYERS: dict[str, Any] = {}
_redis = os.environ.get("ASGIWS_TEST_REDIS_URL")
if _redis:
    layer = {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [_redis]}}
    CHANNEL_LAYERS["default"] = layer
