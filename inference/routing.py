from django.urls import path

from inference.consumers import PredictionConsumer

websocket_urlpatterns = [
    path("ws/predictions/<str:id>/", PredictionConsumer.as_asgi()),
]
