from django.urls import path
from rest_framework.routers import SimpleRouter

from inference.api.files import FileViewSet
from inference.api.stream import prediction_stream
from inference.api.views import PredictionViewSet

router = SimpleRouter(trailing_slash=False)
router.register("predictions", PredictionViewSet, basename="prediction")
router.register("files", FileViewSet, basename="file")

# Also the whole URLconf of the stream's own handler (portal.stream_urls).
stream_urlpatterns = [
    path("predictions/<str:prediction_id>/stream", prediction_stream, name="prediction_stream"),
]

urlpatterns = [*stream_urlpatterns, *router.urls]
