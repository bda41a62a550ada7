"""WebSocket routes of every app, collected in one list for the ASGI router."""

from inference.routing import websocket_urlpatterns as inference_routes

websocket_urlpatterns: list = [*inference_routes]
