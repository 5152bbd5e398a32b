"""OpenAPI for `/api`: views without a serializer are documented by One API's envelope."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

ENVELOPE = inline_serializer(
    name="Envelope",
    fields={
        "success": serializers.BooleanField(),
        "message": serializers.CharField(allow_blank=True),
        "data": serializers.JSONField(required=False),
    },
)
JSON_OBJECT = inline_serializer(name="JsonBody", fields={})


class EnvelopeAutoSchema(AutoSchema):
    def _has_serializer(self) -> bool:
        return bool(getattr(self.view, "serializer_class", None)) or hasattr(
            self.view, "get_serializer"
        )

    def get_request_serializer(self) -> Any:
        if self._has_serializer():
            return super().get_request_serializer()
        return JSON_OBJECT if self.method in ("POST", "PUT", "PATCH") else None

    def get_response_serializers(self) -> Any:
        if self._has_serializer():
            return super().get_response_serializers()
        return ENVELOPE


class SessionCookieScheme(OpenApiAuthenticationExtension):
    target_class = "oneapi.api.CookieSessionAuthentication"
    name = "sessionCookie"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "cookie", "name": "session"}


class AccessTokenScheme(OpenApiAuthenticationExtension):
    target_class = "oneapi.api.AccessTokenAuthentication"
    name = "accessToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "The user's system access token, with or without `Bearer `.",
        }
