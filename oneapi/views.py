from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from oneapi.status import status_data


@require_GET
def status(request: HttpRequest) -> JsonResponse:
    """`GET /api/status`: One API's public status; also the health check."""
    return JsonResponse({"success": True, "message": "", "data": status_data()})
