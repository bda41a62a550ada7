from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from models_hub import services
from models_hub.models import ModelListing, Tag


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ["name", "slug"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(ModelListing)
class ModelListingAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "task",
        "publisher",
        "status",
        "visibility",
        "queue",
        "updated_at",
    ]
    list_filter = [
        "status",
        "task",
        "visibility",
        "queue",
        "tags",
        ("org", admin.EmptyFieldListFilter),
    ]
    search_fields = ["name", "slug", "summary", "source", "org__name", "org__slug"]
    list_select_related = ["org"]
    autocomplete_fields = ["org"]
    filter_horizontal = ["tags"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = [
        "created_by",
        "submitted_at",
        "reviewed_by",
        "reviewed_at",
        "published_at",
        "created_at",
        "updated_at",
    ]
    actions = ["publish", "return_to_draft", "deprecate"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "summary", "description", "task", "tags"]}),
        ("Publisher and visibility", {"fields": ["org", "visibility", "status"]}),
        (
            "Runtime",
            {
                "fields": [
                    "source",
                    "revision",
                    "dtype",
                    "max_context",
                    "default_params",
                    "max_params",
                    "options",
                    "queue",
                    "time_limit_seconds",
                ]
            },
        ),
        ("Input", {"fields": ["input_schema", "example_input"]}),
        (
            "Review",
            {
                "fields": [
                    "review_note",
                    "created_by",
                    "submitted_at",
                    "reviewed_by",
                    "reviewed_at",
                    "published_at",
                    "created_at",
                    "updated_at",
                ]
            },
        ),
    ]

    @admin.display(description="Publisher", ordering="org__name")
    def publisher(self, listing: ModelListing) -> str:
        return listing.publisher_name

    @admin.action(description="Publish selected (pending review, or the operator's drafts)")
    def publish(self, request: HttpRequest, queryset: QuerySet[ModelListing]) -> None:
        count = services.publish_listings(queryset, request.user)
        self._report(request, count, queryset.count(), "published")

    @admin.action(description="Return selected submissions to draft (write the review note first)")
    def return_to_draft(self, request: HttpRequest, queryset: QuerySet[ModelListing]) -> None:
        count = services.reject_listings(queryset, request.user)
        self._report(request, count, queryset.count(), "returned to draft")

    @admin.action(description="Deprecate selected (hidden from the catalog, still callable)")
    def deprecate(self, request: HttpRequest, queryset: QuerySet[ModelListing]) -> None:
        count = services.deprecate_listings(queryset, request.user)
        self._report(request, count, queryset.count(), "deprecated")

    def _report(self, request: HttpRequest, done: int, selected: int, verb: str) -> None:
        self.message_user(request, f"{done} of {selected} listing(s) {verb}.", messages.SUCCESS)
        if done < selected:
            self.message_user(
                request, f"{selected - done} were not in a state that allows it.", messages.WARNING
            )

    def save_model(self, request: HttpRequest, listing: ModelListing, form, change: bool) -> None:
        if not change:
            listing.created_by = request.user
        super().save_model(request, listing, form, change)
