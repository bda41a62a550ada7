import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from portal.models import ApiToken, Membership, Organization
from portal.tokens import TOKEN_PATTERN

ROOT = Path(__file__).resolve().parents[2]
STRONG_KEY = "k3y-" + "".join(chr(ord("a") + i % 26) for i in range(30)) + "-0123456789ABCDEF"


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_checks_database_redis_and_broker(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content


@pytest.mark.django_db
def test_readyz_names_what_is_down(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["down"] == ["redis", "broker"]


@pytest.mark.django_db
def test_create_org_prints_the_slug_alone_and_creates_the_owner():
    out = StringIO()
    call_command("create_org", "--name", "Globex", "--owner-email", "Boss@Globex.com", stdout=out)
    slug = out.getvalue().strip()
    org = Organization.objects.get(slug=slug)
    assert org.name == "Globex"
    assert Membership.objects.get(org=org).user.email == "boss@globex.com"


@pytest.mark.django_db
def test_issue_token_prints_the_token_alone(org):
    out = StringIO()
    call_command(
        "issue_token", "--org", org.slug, "--name", "deploy", "--scopes", "read",
        "--expires-days", "30", stdout=out,
    )  # fmt: skip
    plaintext = out.getvalue().strip()
    assert TOKEN_PATTERN.match(plaintext)
    token = ApiToken.objects.get(org=org)
    assert token.scopes == ["read"] and token.expires_at is not None


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args",
    [
        ["--org", "missing", "--name", "x"],
        ["--org", "{org}", "--name", ""],
        ["--org", "{org}", "--name", "x", "--scopes", "everything"],
        ["--org", "{org}", "--name", "x", "--expires-days", "0"],
    ],
)
def test_issue_token_rejects_bad_arguments(org, args):
    args = [a.replace("{org}", org.slug) for a in args]
    with pytest.raises(CommandError):
        call_command("issue_token", *args, stdout=StringIO())
    assert not ApiToken.objects.exists()


def run_manage(env_overrides: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "TOKEN_HMAC_KEY"}}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


PRODUCTION = {"PORTAL_ENV": "production", "ALLOWED_HOSTS": "portal.example.com"}


@pytest.mark.parametrize("key", ["", "changeme", "short-key", "a" * 60])
def test_production_refuses_weak_secret_keys(key):
    result = run_manage({**PRODUCTION, "SECRET_KEY": key}, "check")
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_production_settings_pass_check_deploy():
    result = run_manage({**PRODUCTION, "SECRET_KEY": STRONG_KEY}, "check", "--deploy")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


# Images on an S3-compatible store (README: "Images on S3"); the keys are there to show
# that credentials never enter the settings.
FILES_ON_S3 = {
    "FILES_STORAGE_BACKEND": "storages.backends.s3.S3Storage",
    "FILES_S3_BUCKET": "portal-files",
    "FILES_S3_ENDPOINT_URL": "https://minio.internal:9000",
    "FILES_S3_REGION": "eu-central-1",
    "FILES_S3_ADDRESSING_STYLE": "path",
    "AWS_ACCESS_KEY_ID": "access-key-from-the-environment",
    "AWS_SECRET_ACCESS_KEY": "secret-key-from-the-environment",
}
PRINT_FILES_STORAGE = (
    "import json; from django.conf import settings; "
    "from django.core.files.storage import storages; "
    "print(json.dumps([settings.STORAGES['files'], type(storages['files']).__name__]))"
)


def files_storage_in_production(overrides: dict[str, str]) -> list:
    result = run_manage(
        {**PRODUCTION, "SECRET_KEY": STRONG_KEY, **overrides},
        "shell",
        "--no-imports",
        "-c",
        PRINT_FILES_STORAGE,
    )
    assert result.returncode == 0, result.stderr
    assert "from-the-environment" not in result.stdout
    return json.loads(result.stdout)


def test_production_puts_files_on_the_s3_bucket_the_environment_names():
    assert files_storage_in_production(FILES_ON_S3) == [
        {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": "portal-files",
                "endpoint_url": "https://minio.internal:9000",
                "region_name": "eu-central-1",
                "addressing_style": "path",
                "signature_version": "s3v4",
                "default_acl": None,
                "querystring_auth": True,
                "custom_domain": None,
                "file_overwrite": False,
            },
        },
        "S3Storage",
    ]


def test_production_keeps_files_in_the_shared_var_folder_by_default(tmp_path):
    """docker-compose.yml mounts one volume at the var folder in web and workers."""
    found = files_storage_in_production(
        {"PORTAL_VAR_DIR": str(tmp_path), "FILES_STORAGE_BACKEND": ""}
    )
    assert found == [
        {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "files"), "base_url": None},
        },
        "FileSystemStorage",
    ]


def test_production_refuses_s3_files_without_a_bucket():
    result = run_manage(
        {**PRODUCTION, "SECRET_KEY": STRONG_KEY, **FILES_ON_S3, "FILES_S3_BUCKET": ""}, "check"
    )
    assert result.returncode != 0
    assert "FILES_S3_BUCKET must be set" in result.stderr


def test_production_settings_with_s3_files_pass_check_deploy():
    result = run_manage(
        {**PRODUCTION, "SECRET_KEY": STRONG_KEY, **FILES_ON_S3}, "check", "--deploy"
    )
    assert result.returncode == 0, result.stderr
