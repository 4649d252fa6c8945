"""The missing-extra command fits the installer that installed keyrun."""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path

import pytest

from keyrun.installer import (
    Installation,
    add_extra_command,
    add_package_command,
    detect,
    extra_requirements,
)


def dist_info(tmp_path: Path, installer: str | None, direct_url: dict[str, object] | None
              ) -> metadata.Distribution:
    folder = tmp_path / "keyrun-1.0.dist-info"
    folder.mkdir()
    (folder / "METADATA").write_text("Metadata-Version: 2.1\nName: keyrun\nVersion: 1.0\n")
    if installer is not None:
        (folder / "INSTALLER").write_text(installer + "\n")
    if direct_url is not None:
        (folder / "direct_url.json").write_text(json.dumps(direct_url))
    return metadata.PathDistribution(folder)


def test_a_plugin_distribution_beside_keyrun() -> None:
    assert add_package_command("kr-x[sdk]", Installation("pipx")) == \
        "pipx inject keyrun 'kr-x[sdk]'"
    assert add_package_command("kr-x[sdk]", Installation("uv-tool")) == \
        "uv tool install keyrun --with 'kr-x[sdk]'"
    assert add_package_command("kr-x[sdk]", Installation("uv")) == "uv pip install 'kr-x[sdk]'"
    assert add_package_command("kr-x[sdk]", Installation("pip")) == "pip install 'kr-x[sdk]'"


@pytest.mark.parametrize(("installer", "prefix", "expected"), [
    ("pip", "/home/u/.local/share/pipx/venvs/keyrun", "pipx inject keyrun boto3"),
    ("uv", "/home/u/.local/share/uv/tools/keyrun", "uv tool install 'keyrun[aws]'"),
    ("uv", "/home/u/project/.venv", "uv pip install 'keyrun[aws]'"),
    ("pip", "/home/u/project/.venv", "pip install 'keyrun[aws]'"),
    (None, "/usr", "pip install 'keyrun[aws]'"),
])
def test_installed_from_an_index(tmp_path: Path, installer: str | None, prefix: str,
                                 expected: str) -> None:
    found = detect(dist_info(tmp_path, installer, None), prefix)
    assert add_extra_command("aws", found) == expected


def test_installed_from_a_clone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clone = tmp_path / "keyrun"
    clone.mkdir()
    url = {"url": clone.as_uri(), "dir_info": {}}
    found = detect(dist_info(tmp_path, "pip", url), "/home/u/venv")
    assert found == Installation("pip", clone, editable=False)
    assert add_extra_command("aws", found) == f"pip install '{clone}[aws]'"
    monkeypatch.chdir(clone)
    assert add_extra_command("aws", found) == "pip install '.[aws]'"
    editable = Installation("uv", clone, editable=True)
    assert add_extra_command("vault", editable) == "uv pip install -e '.[vault]'"
    assert add_extra_command("vault", Installation("pipx", clone)) == \
        "pipx install --force '.[vault]'"


def test_a_wheel_file_is_no_clone(tmp_path: Path) -> None:
    wheel = tmp_path / "keyrun-1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    found = detect(dist_info(tmp_path, "pip", {"url": wheel.as_uri(), "archive_info": {}}), "/v")
    assert found == Installation("pip")


def test_the_extras_packages_come_from_keyrun_metadata() -> None:
    assert extra_requirements("keyrun", "aws") == ["boto3"]
    assert extra_requirements("keyrun", "azure") == ["azure-identity", "azure-keyvault-secrets"]
    assert extra_requirements("keyrun", "gcp") == ["google-cloud-secret-manager", "google-crc32c"]


def test_this_checkout_is_detected_as_what_it_is() -> None:
    found = detect()  # the test venv: pip, editable, from this clone (CI and developers)
    root = Path(__file__).resolve().parent.parent
    assert found.directory is not None
    assert os.path.samefile(found.directory, root)
    assert found.editable


@pytest.mark.parametrize(("marker", "expected"), [
    ("pipx_metadata.json", "pipx inject keyrun boto3"),  # PIPX_HOME anywhere; pipx may use uv
    ("uv-receipt.toml", "uv tool install 'keyrun[aws]'"),  # UV_TOOL_DIR anywhere
])
def test_a_tool_venv_is_known_by_the_file_its_installer_left(tmp_path: Path, marker: str,
                                                             expected: str) -> None:
    venv = tmp_path / "opt" / "tools" / "keyrun"
    venv.mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / marker).write_text("")
    found = detect(dist_info(tmp_path, "uv", None), str(venv))
    assert add_extra_command("aws", found) == expected


@pytest.mark.parametrize(("installer", "named", "plain"), [
    ("pip", "{python} -m pip install", "pip install"),
    ("uv", "uv pip install --python {python}", "uv pip install"),
])
def test_a_venv_that_is_not_active_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            installer: str, named: str, plain: str) -> None:
    venv = tmp_path / "my venv"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    named = named.format(python=f"'{venv / 'bin' / 'python'}'")  # a bare pip installs elsewhere
    dist = dist_info(tmp_path, installer, None)
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    found = detect(dist, str(venv))
    assert add_extra_command("aws", found) == f"{named} 'keyrun[aws]'"
    assert add_package_command("kr-x[sdk]", found) == f"{named} 'kr-x[sdk]'"
    monkeypatch.setenv("VIRTUAL_ENV", str(venv))  # activated: its pip is the one on PATH
    assert add_extra_command("aws", detect(dist, str(venv))) == f"{plain} 'keyrun[aws]'"
