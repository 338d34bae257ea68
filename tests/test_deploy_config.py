"""The deployment files name only settings that exist: a misspelt `MAILROOM_*` key is silently ignored by the
services (unknown variables are allowed), so a typo there would quietly run production on a default."""

from __future__ import annotations

import re

import yaml

from shared.settings import Settings
from tests.support.stack import REPO

KNOWN = {f"MAILROOM_{name.upper()}" for name in Settings.model_fields}


def mailroom_keys(text: str) -> set[str]:
    return set(re.findall(r"\bMAILROOM_[A-Z0-9_]+\b", text))


def test_kubernetes_config_and_secret_keys_are_settings() -> None:
    for name in ("config.yaml", "secret.example.yaml"):
        [document] = yaml.safe_load_all((REPO / "deploy" / "k8s" / name).read_text())
        data = document.get("data") or document.get("stringData")
        assert set(data) - KNOWN == set(), name


def test_compose_and_image_set_only_settings() -> None:
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    environment: set[str] = set()
    for service in compose["services"].values():
        environment |= {key for key in service.get("environment", {}) if key.startswith("MAILROOM_")}
    assert environment, "compose.yaml configures the services"
    assert environment - KNOWN == set()
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    env_block = dockerfile[dockerfile.index("ENV PATH=/opt/venv/bin") : dockerfile.index("WORKDIR /var/lib/mailroom")]
    assert mailroom_keys(env_block) - KNOWN == set()


def test_every_setting_the_readme_documents_exists() -> None:
    documented = mailroom_keys((REPO / "README.md").read_text())
    # The table abbreviates pairs as `MAILROOM_X_HOST` / `_PORT`; the first of each pair is spelt out in full.
    assert documented - KNOWN == set()
