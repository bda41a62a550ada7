from django.urls import path

from models_hub import views

# "publish" is a reserved slug (models_hub.services.RESERVED_SLUGS), so these paths can
# never shadow a model page.
urlpatterns = [
    path("", views.model_list, name="model_list"),
    path("publish/", views.publish_list, name="publish_list"),
    path("publish/new/", views.publish_create, name="publish_create"),
    path("publish/<slug:slug>/edit/", views.publish_edit, name="publish_edit"),
    path("publish/<slug:slug>/submit/", views.publish_submit, name="publish_submit"),
    path("publish/<slug:slug>/withdraw/", views.publish_withdraw, name="publish_withdraw"),
    path(
        "publish/<slug:slug>/versions/<str:version>/deprecate/",
        views.publish_deprecate_version,
        name="publish_deprecate_version",
    ),
    path("<slug:slug>/", views.model_detail, name="model_detail"),
    path("<slug:slug>/snippets/", views.playground_snippets, name="playground_snippets"),
]
