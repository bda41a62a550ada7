"""`manage.py check --deploy` is clean under production settings."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def production_env(var_dir: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        # Whatever the developer's shell sets must not soften the production defaults.
        if key
        not in {"DEBUG", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(
        PORTAL_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(64),
        TOKEN_HMAC_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="portal.example.com",
        PORTAL_VAR_DIR=str(var_dir),
        STATIC_ROOT=str(var_dir / "static"),
    )
    return env


def test_check_deploy_reports_nothing_in_production(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        cwd=ROOT,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output, output
    assert "WARNING" not in output and "security.W" not in output, output


def test_production_refuses_a_weak_secret_key(tmp_path):
    env = production_env(tmp_path) | {"SECRET_KEY": "changeme"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def production_setting(tmp_path, name: str, **overrides: str) -> str:
    """repr() of one setting as production loads it, in a fresh interpreter."""
    code = (
        "import django; django.setup(); from django.conf import settings; "
        f"print(repr(settings.{name}))"
    )
    env = production_env(tmp_path) | {"DJANGO_SETTINGS_MODULE": "portal.settings", **overrides}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_without_a_trusted_proxy_x_forwarded_proto_is_not_believed(tmp_path):
    # Anyone can send X-Forwarded-Proto: https; only our own proxy's word may make a
    # request "secure" (secure cookies, the https redirect, the WebSocket Origin check).
    value = production_setting(tmp_path, "SECURE_PROXY_SSL_HEADER", TRUSTED_PROXY_COUNT="0")
    assert value == "None"


def test_behind_a_trusted_proxy_its_forwarded_proto_is_believed(tmp_path):
    value = production_setting(tmp_path, "SECURE_PROXY_SSL_HEADER", TRUSTED_PROXY_COUNT="1")
    assert value == "('HTTP_X_FORWARDED_PROTO', 'https')"
