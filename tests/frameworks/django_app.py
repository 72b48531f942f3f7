"""Plain Django over ASGI: an async view with a path parameter and a query, a sync view (Django
runs it in a thread), a JSON POST, and Django's own 404. Serve it with
``DJANGO_SETTINGS_MODULE=frameworks.django_settings`` (the default here)."""

from __future__ import annotations

import json
import os
import threading

from django.core.asgi import get_asgi_application
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "frameworks.django_settings")


async def read_item(request: HttpRequest, item_id: int) -> JsonResponse:
    return JsonResponse({"item_id": item_id, "q": request.GET.get("q")})


def sync_view(request: HttpRequest) -> HttpResponse:
    # Django runs a sync view in a worker thread, off the server's event loop.
    main = threading.current_thread() is threading.main_thread()
    return HttpResponse(f"sync view, main thread: {main}", content_type="text/plain")


@csrf_exempt
async def echo(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "method": request.method,
            "got": json.loads(request.body),
            "client": request.META.get("REMOTE_ADDR"),
            "scheme": request.scheme,
        }
    )


urlpatterns = [
    path("items/<int:item_id>", read_item),
    path("sync", sync_view),
    path("echo", echo),
]

application = get_asgi_application()
