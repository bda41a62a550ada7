from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import F, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from models_hub import hot, services, versions
from models_hub.forms import StaffDeprecateVersionForm
from models_hub.models import CALLABLE_STATUSES, SNAPSHOT_FIELDS, ModelListing, ModelVersion, Tag
from portal import hotcache
from portal.errors import Conflict, PortalError


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
        "content_revision",
        "approved_revision",
        "published_at",
        "created_at",
        "updated_at",
        "version_list",
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
                    "content_revision",
                    "approved_revision",
                    "reviewed_by",
                    "reviewed_at",
                    "published_at",
                    "created_at",
                    "updated_at",
                ]
            },
        ),
        ("Versions", {"fields": ["version_list"]}),
    ]

    @admin.display(description="Versions (newest first)")
    def version_list(self, listing: ModelListing) -> str:
        """Read-only, and not an inline: versions are written by publishing, and the change
        form posts nothing for them."""
        rows = format_html_join(
            "",
            '<li><a href="{}">{}</a> {} (revision {}){}</li>',
            (
                (
                    reverse("admin:models_hub_modelversion_change", args=[version.pk]),
                    version.id,
                    f"{version.created_at:%Y-%m-%d %H:%M}",
                    version.content_revision,
                    f", retires {version.retires_at:%Y-%m-%d %H:%M}" if version.retires_at else "",
                )
                for version in listing.versions.all()
            ),
        )
        return format_html("<ul>{}</ul>", rows) if rows else "None yet: publishing writes one."

    @admin.display(description="Publisher", ordering="org__name")
    def publisher(self, listing: ModelListing) -> str:
        return listing.publisher_name

    def get_urls(self) -> list[URLPattern]:
        def review_url(route: str, view: Callable[..., HttpResponse], action: str) -> URLPattern:
            name = f"{self.opts.app_label}_{self.opts.model_name}_{action}"
            return path(route, self.admin_site.admin_view(require_POST(view)), name=name)

        return [
            review_url("<int:object_id>/approve/", self.approve_view, "approve"),
            review_url("<int:object_id>/return/", self.return_view, "return"),
            *super().get_urls(),
        ]

    def approve_view(self, request: HttpRequest, object_id: int) -> HttpResponseRedirect:
        """The change page's approve button: approves the revision that page showed."""
        return self._review(
            request,
            object_id,
            lambda listing, revision: services.approve_listing(listing.pk, request.user, revision),
            "approved",
        )

    def return_view(self, request: HttpRequest, object_id: int) -> HttpResponseRedirect:
        """The change page's return button: back to draft, with the note written beside it."""
        note = request.POST.get("return_note", "")
        return self._review(
            request,
            object_id,
            lambda listing, revision: services.return_listing(
                listing.pk, request.user, revision, note
            ),
            "returned to the publisher",
        )

    def _review(
        self,
        request: HttpRequest,
        object_id: int,
        act: Callable[[ModelListing, int], ModelListing],
        done: str,
    ) -> HttpResponseRedirect:
        """Runs a review decision on the revision the change page showed (its button posts
        it), and goes back to that page with the outcome."""
        listing = get_object_or_404(ModelListing, pk=object_id)
        if not self.has_change_permission(request, listing):
            raise PermissionDenied
        revision = request.POST.get("revision", "")
        try:
            if not revision.isdigit():
                raise Conflict("Review from the listing's page.", code="review_outdated")
            act(listing, int(revision))
        except PortalError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(
                request, f"Revision {revision} of {listing.slug} {done}.", messages.SUCCESS
            )
        change = f"admin:{self.opts.app_label}_{self.opts.model_name}_change"
        return HttpResponseRedirect(reverse(change, args=[listing.pk]))

    # Each action counts the selection before changing it: the queryset carries the
    # changelist's filters (the review queue is filtered by status), so counting it after
    # the change no longer finds what was selected ("1 of 0").

    @admin.action(description="Publish selected (approved submissions, or the operator's drafts)")
    def publish(self, request: HttpRequest, queryset: QuerySet[ModelListing]) -> None:
        selected = queryset.count()
        try:
            count = services.publish_listings(queryset, request.user)
        except Conflict as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self._report(request, count, selected, "published")

    @admin.action(description="Return selected submissions to draft (write the review note first)")
    def return_to_draft(self, request: HttpRequest, queryset: QuerySet[ModelListing]) -> None:
        selected = queryset.count()
        count = services.reject_listings(queryset, request.user)
        self._report(request, count, selected, "returned to draft")

    @admin.action(description="Deprecate selected (hidden from the catalog, still callable)")
    def deprecate(self, request: HttpRequest, queryset: QuerySet[ModelListing]) -> None:
        selected = queryset.count()
        count = services.deprecate_listings(queryset, request.user)
        self._report(request, count, selected, "deprecated")

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
        if change:
            # Staff edited the content: an earlier approval no longer covers it.
            hotcache.update(
                ModelListing.objects.filter(pk=listing.pk),
                hot.CATALOG_SCOPE,
                content_revision=F("content_revision") + 1,
            )
        if listing.status in CALLABLE_STATUSES:
            # Staff edited a live listing: that is a publish, and callers run versions.
            saved = ModelListing.objects.get(pk=listing.pk)  # with its bumped revision
            versions.ensure_current_version(saved, request.user)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "listing",
        "created_at",
        "content_revision",
        "deprecated_at",
        "retires_at",
    ]
    list_filter = [("deprecated_at", admin.EmptyFieldListFilter)]
    search_fields = ["id", "listing__slug", "listing__name"]
    list_select_related = ["listing"]
    readonly_fields = [
        "id",
        "listing",
        "content_revision",
        *SNAPSHOT_FIELDS,
        "published_by",
        "created_at",
        "deprecated_at",
        "retires_at",
        "deprecated_by",
        "deprecation_reason",
    ]
    actions = ["deprecate"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        # Predictions point at versions, and pinned clients must get 410, not 404.
        return False

    @admin.action(description="Deprecate selected versions (set a retirement date, tell callers)")
    def deprecate(
        self, request: HttpRequest, queryset: QuerySet[ModelVersion]
    ) -> HttpResponse | None:
        form = StaffDeprecateVersionForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            context = {
                **self.admin_site.each_context(request),
                "title": "Deprecate versions",
                "form": form,
                "versions": queryset.select_related("listing"),
            }
            return render(request, "admin/models_hub/modelversion/deprecate.html", context)
        done = 0
        for version in queryset:
            try:
                versions.deprecate_version(
                    version,
                    form.cleaned_data["retires_at"],
                    request.user,
                    reason=form.cleaned_data["reason"],
                    force=form.cleaned_data["force"],
                )
            except PortalError as exc:
                self.message_user(request, f"{version}: {exc.message}", messages.ERROR)
            else:
                done += 1
        self.message_user(request, f"{done} version(s) deprecated.", messages.SUCCESS)
        return None
