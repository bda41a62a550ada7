from django.urls import path

from billing import publisher_views

urlpatterns = [
    path("", publisher_views.publisher_page, name="publisher"),
    path("ledger.csv", publisher_views.ledger_csv, name="publisher_ledger_csv"),
    path("listings/", publisher_views.listings_page, name="publisher_listings"),
    path(
        "listings/<slug:slug>/price/",
        publisher_views.schedule_price,
        name="publisher_schedule_price",
    ),
    path("listings/<slug:slug>/plans/", publisher_views.add_plan, name="publisher_add_plan"),
    path(
        "listings/<slug:slug>/plans/<int:plan_id>/retire/",
        publisher_views.retire_plan,
        name="publisher_retire_plan",
    ),
    path("analytics/", publisher_views.analytics_page, name="publisher_analytics"),
    path("analytics.csv", publisher_views.analytics_csv, name="publisher_analytics_csv"),
    path("onboarding/", publisher_views.onboarding, name="publisher_onboarding"),
    path(
        "onboarding/refresh/",
        publisher_views.onboarding_refresh,
        name="publisher_onboarding_refresh",
    ),
]
