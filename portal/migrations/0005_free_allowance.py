from django.db import migrations, models


def grandfather_free_allowance(apps, schema_editor):
    """Orgs created before the free allowance became personal keep the one they had."""
    Organization = apps.get_model("portal", "Organization")
    Organization.objects.update(free_allowance=True)


class Migration(migrations.Migration):
    dependencies = [("portal", "0004_organization_name_single_line")]

    operations = [
        migrations.AddField(
            model_name="organization",
            name="free_allowance",
            field=models.BooleanField(
                default=False,
                help_text=(
                    "Uses the free plan's allowance without a subscription (personal workspaces)."
                ),
            ),
        ),
        migrations.RunPython(grandfather_free_allowance, migrations.RunPython.noop),
    ]
