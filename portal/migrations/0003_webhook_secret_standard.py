"""Re-issues every organization's webhook secret in the Standard Webhooks form.

The old secrets were URL-safe base64 after `whsec_` and were used as the HMAC key as text,
so no standardwebhooks library could verify a delivery. The new form is `whsec_` + standard
base64 of 32 random bytes, and those bytes are the key. Nobody could verify with the old
secrets (no page or API showed them), so nothing that worked stops working."""

import base64
import secrets

from django.db import migrations


def new_standard_secret() -> str:
    # Frozen here rather than imported, so that this migration means the same thing later.
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def reissue_secrets(apps, schema_editor):
    Organization = apps.get_model("portal", "Organization")
    for org in Organization.objects.only("pk").iterator():
        Organization.objects.filter(pk=org.pk).update(webhook_secret=new_standard_secret())


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0002_retention"),
    ]

    operations = [
        # Backwards: the new secrets stay; they are valid in the old code too.
        migrations.RunPython(reissue_secrets, migrations.RunPython.noop),
    ]
