"""Settings come from the environment, fail loudly when malformed, and are safe in production."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from webconnect.env import envbool, envint, envlist, envsecret

ROOT = Path(__file__).resolve().parents[2]


def run_django(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "OIDC_", "WEBCONNECT_TEST"))
    }
    clean["DJANGO_SETTINGS_MODULE"] = "webconnect.settings"
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


class TestEnvHelpers:
    def test_it_reads_booleans_and_rejects_nonsense(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FLAG", "yes")
        assert envbool("FLAG") is True
        monkeypatch.setenv("FLAG", "maybe")
        with pytest.raises(ImproperlyConfigured, match="FLAG must be a boolean"):
            envbool("FLAG")

    def test_it_rejects_malformed_and_too_small_integers(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("SIZE", "12kb")
        with pytest.raises(ImproperlyConfigured, match="SIZE must be an integer"):
            envint("SIZE", 1)
        monkeypatch.setenv("SIZE", "-3")
        with pytest.raises(ImproperlyConfigured, match="at least 0"):
            envint("SIZE", 1, minimum=0)

    def test_it_splits_lists_and_reads_secrets_from_files(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("HOSTS", "a.example, b.example,,")
        assert envlist("HOSTS") == ["a.example", "b.example"]
        secret_file = tmp_path / "secret"
        secret_file.write_text("s3cret\n")
        monkeypatch.setenv("TOKEN_FILE", str(secret_file))
        assert envsecret("TOKEN") == "s3cret"
        monkeypatch.setenv("TOKEN_FILE", str(tmp_path / "missing"))
        with pytest.raises(ImproperlyConfigured, match="TOKEN_FILE"):
            envsecret("TOKEN")


class TestStartUp:
    def test_production_refuses_to_start_without_a_secret_key(self, tmp_path: Path) -> None:
        result = run_django({"DEBUG": "false", "WEBCONNECT_DATA_DIR": str(tmp_path)}, "check")
        assert result.returncode != 0
        assert "SECRET_KEY must be set" in result.stderr

    def test_a_malformed_variable_is_a_clear_start_up_error(self, tmp_path: Path) -> None:
        result = run_django(
            {"DEBUG": "true", "WEBCONNECT_DATA_DIR": str(tmp_path), "TRUSTED_PROXY_COUNT": "two"}, "check"
        )
        assert result.returncode != 0
        assert "TRUSTED_PROXY_COUNT must be an integer" in result.stderr

    def test_development_defaults_start_with_a_generated_secret(self, tmp_path: Path) -> None:
        result = run_django({"DEBUG": "true", "WEBCONNECT_DATA_DIR": str(tmp_path)}, "check")
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "dev-secret-key").stat().st_mode & 0o077 == 0

    def test_production_settings_pass_the_deploy_check(self, tmp_path: Path) -> None:
        env = {
            "DEBUG": "false",
            "SECRET_KEY": "x7!" + "k" * 20 + "Zq9#" + "m" * 30 + "pW2@",
            "WEBCONNECT_DATA_DIR": str(tmp_path),
            "ALLOWED_HOSTS": "collab.example.com",
            "CSRF_TRUSTED_ORIGINS": "https://collab.example.com",
            "HTTPS": "true",
            "TRUSTED_PROXY_COUNT": "1",
        }
        result = run_django(env, "check", "--deploy", "--fail-level", "WARNING")
        assert result.returncode == 0, result.stdout + result.stderr
