from django.urls import path

from billing import views

urlpatterns = [
    path("", views.overview, name="billing_overview"),
    path("usage/", views.usage_page, name="billing_usage"),
    path("usage.csv", views.usage_csv, name="billing_usage_csv"),
    path("checkout/<slug:plan>/", views.checkout, name="billing_checkout"),
    path(
        "checkout/listing/<int:plan_id>/",
        views.listing_checkout,
        name="billing_listing_checkout",
    ),
    path("success/", views.checkout_success, name="billing_success"),
    path("cancel/", views.checkout_cancel, name="billing_cancel"),
    path("portal/", views.customer_portal, name="billing_portal"),
    path("credits/checkout/", views.credits_checkout, name="billing_credits_checkout"),
    path("credits/auto-top-up/", views.credits_auto_top_up, name="billing_credits_auto_top_up"),
    path("spend-cap/", views.spend_cap, name="billing_spend_cap"),
    path("tokens/<int:token_id>/spend-cap/", views.token_spend_cap, name="billing_token_spend_cap"),
    path("stripe/webhook/", views.stripe_webhook, name="stripe_webhook"),
]
