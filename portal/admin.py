from django.contrib import admin

from portal.models import ApiToken, AuditLog, Invitation, Membership, Organization


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "is_personal", "free_allowance", "created_at"]
    list_filter = ["is_personal", "free_allowance"]
    search_fields = ["name", "slug", "memberships__user__email"]
    readonly_fields = ["webhook_secret", "created_at"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "org", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "org__name", "org__slug"]
    autocomplete_fields = ["user", "org"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "org", "role", "created_at", "expires_at", "accepted_at"]
    list_filter = ["role"]
    search_fields = ["email", "org__name"]
    readonly_fields = ["nonce", "accepted_at", "accepted_by", "created_at"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "org", "scopes", "last_used_at", "expires_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix", "org__name", "org__slug"]
    # Digest and prefix identify a secret: operators can revoke, never edit them.
    readonly_fields = ["prefix", "digest", "last_used_at", "created_at", "created_by"]

    def has_add_permission(self, request) -> bool:
        return False  # tokens are issued through the service so the plaintext is shown once


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    list_display = ["created_at", "org", "actor", "action", "target"]
    list_filter = ["action"]
    search_fields = ["org__name", "actor__email", "target"]
    readonly_fields = ["org", "actor", "action", "target", "data", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
