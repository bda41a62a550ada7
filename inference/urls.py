from django.urls import path

from inference import views

urlpatterns = [
    path("", views.prediction_list, name="prediction_list"),
    path("<str:prediction_id>/", views.prediction_detail, name="prediction_detail"),
]
