"""The HTTP decision service (``looper serve``): an ASGI application over one
``LooperClient``, with its OpenAPI document at ``/openapi.json``."""

from looper_pipelines.serving.http.app import LooperHTTP, app_from_env, create_app, parse_json
from looper_pipelines.serving.http.schemas import build_openapi

__all__ = ["LooperHTTP", "app_from_env", "build_openapi", "create_app", "parse_json"]
