from django.db import migrations
from django.utils import timezone

# The roles that may create API tokens (portal.services.TOKEN_ROLE and above), as of this
# migration: a historical copy, so later changes to the services do not rewrite history.
TOKEN_ROLES = ("admin", "owner")


def revoke_tokens_without_authority(apps, schema_editor):
    """Tokens outlived their creator's membership or admin role until removal and demotion
    revoked them: revoke the ones already out there, one audit row each."""
    ApiToken = apps.get_model("portal", "ApiToken")
    AuditLog = apps.get_model("portal", "AuditLog")
    Membership = apps.get_model("portal", "Membership")
    now = timezone.now()
    live = ApiToken.objects.filter(revoked_at__isnull=True, created_by__isnull=False)
    for token in live.iterator():
        entitled = Membership.objects.filter(
            org_id=token.org_id, user_id=token.created_by_id, role__in=TOKEN_ROLES
        )
        if entitled.exists():
            continue
        ApiToken.objects.filter(pk=token.pk).update(revoked_at=now)
        AuditLog.objects.create(
            org_id=token.org_id,
            action="token.revoked",
            target=f"{token.name} (mp_{token.prefix})"[:200],
            data={"reason": "creator.no_longer_admin"},
        )


class Migration(migrations.Migration):
    dependencies = [("portal", "0005_free_allowance")]

    operations = [migrations.RunPython(revoke_tokens_without_authority, migrations.RunPython.noop)]
