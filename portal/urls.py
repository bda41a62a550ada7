from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from billing import views as billing_views
from billing.api.views import PublisherLedgerView, PublisherStatsView, UsageView
from inference import views as inference_views
from inference.api import openai
from portal import health, monitoring, views
from portal.api.account import AccountView
from portal.api.webhooks import AccountWebhookView, WebhookSecretView
from portal.csp import REDOC_OVERRIDES, with_policy_overrides

# Operators and API readers are on the portal's own site: its name, and a way back to it.
admin.site.site_header = "Model Portal administration"
admin.site.site_title = "Model Portal administration"
admin.site.index_title = "Model Portal administration"
admin.site.site_url = "/"

api_v1 = [
    path("account", AccountView.as_view(), name="api_account"),
    path("usage", UsageView.as_view(), name="api_usage"),
    path("publisher/ledger", PublisherLedgerView.as_view(), name="api_publisher_ledger"),
    path("publisher/stats", PublisherStatsView.as_view(), name="api_publisher_stats"),
    path("webhooks/default/secret", WebhookSecretView.as_view(), name="api_webhook_secret"),
    path("webhooks/default", AccountWebhookView.as_view(), name="api_account_webhook"),
    path("", include("models_hub.api.urls")),
    path("", include("inference.api.urls")),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("orgs/", views.org_list, name="org_list"),
    path("orgs/switch/", views.org_switch, name="org_switch"),
    path("orgs/<slug:slug>/rename/", views.org_rename, name="org_rename"),
    path("org/delete/", views.org_delete, name="org_delete"),
    path("org/members/", views.org_members, name="org_members"),
    path("org/retention/", views.org_retention, name="org_retention"),
    path("org/settings/", views.org_settings, name="org_settings"),
    path(
        "org/settings/webhook-secret/rotate/",
        views.webhook_secret_rotate,
        name="webhook_secret_rotate",
    ),
    path("org/members/<int:membership_id>/role/", views.member_role, name="member_role"),
    path("org/members/<int:membership_id>/remove/", views.member_remove, name="member_remove"),
    path("org/invitations/", views.invite_create, name="invite_create"),
    path("org/invitations/<int:invitation_id>/revoke/", views.invite_revoke, name="invite_revoke"),
    path("invitations/<str:key>/", views.invitation_accept, name="invitation_accept"),
    path("org/tokens/", views.token_list, name="token_list"),
    path("org/tokens/<int:token_id>/revoke/", views.token_revoke, name="token_revoke"),
    path("org/audit/", views.audit_log, name="audit_log"),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("models/", include("models_hub.urls")),
    path("pricing/", billing_views.pricing, name="pricing"),
    path("billing/", include("billing.urls")),
    path("publisher/", include("billing.publisher_urls")),
    path("predictions/", include("inference.urls")),
    path("files/<str:file_id>/", inference_views.file_content, name="file_content"),
    path("api/v1/", include(api_v1)),
    path("v1/models", openai.list_models, name="openai_models"),
    path("v1/chat/completions", openai.chat_completions, name="openai_chat_completions"),
    path("v1/completions", openai.completions, name="openai_completions"),
    path("v1/embeddings", openai.embeddings, name="openai_embeddings"),
    path("docs/quickstart/", inference_views.quickstart, name="quickstart"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    # Templates without inline script (or style, but ReDoc's own): the CSP forbids them.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api_schema", template_name="api_docs/swagger_ui.html"
        ),
        name="api_docs",
    ),
    path(
        "api/redoc/",
        with_policy_overrides(REDOC_OVERRIDES)(
            SpectacularRedocView.as_view(url_name="api_schema", template_name="api_docs/redoc.html")
        ),
        name="api_redoc",
    ),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", monitoring.metrics_view, name="metrics"),
]
