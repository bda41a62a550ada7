from django.urls import path

from models_hub.api.views import ModelDetailView, ModelListView, ModelVersionsView

urlpatterns = [
    path("models", ModelListView.as_view(), name="api_model_list"),
    path("models/<slug:slug>", ModelDetailView.as_view(), name="api_model_detail"),
    path("models/<slug:slug>/versions", ModelVersionsView.as_view(), name="api_model_versions"),
]
