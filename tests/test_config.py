"""keyrun.toml: discovery, every rule of SPEC §2, and errors that name their place."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyrun.config import choose_env, environment, find_config, load_config, parse_config
from keyrun.errors import ConfigError
from keyrun.profile import open_profile
from keyrun.resolve import fetch_profile
from tests.helpers import write

BASE = """
project = "support-bot"
default_env = "dev"

[keys]
OPENAI_API_KEY = {}
ANTHROPIC_API_KEY = { description = "Claude API key" }
PINECONE_API_KEY = { optional = true }
DATABASE_URL = { name = "db-url" }

[sources.local]
type = "dotenv"
path = ".env"

[sources.other]
type = "dotenv"
path = "other/{project}-{env}.env"

[env.dev]
sources = ["local"]

[env.staging]
sources = ["other"]
rotate_after = "90d"
timeout = "5s"
pass_env = ["VAULT_TOKEN"]

[env.production]
extends = "staging"

[env.production.keys]
DATABASE_URL = { source = "local", name = "db/url" }
"""


def config_at(tmp_path: Path, text: str = BASE) -> Path:
    return write(tmp_path / "keyrun.toml", text)


def error_of(tmp_path: Path, text: str) -> str:
    path = config_at(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        parse_config(path, text)
    return f"{caught.value.message}\n{caught.value.hint}"


def test_found_in_the_nearest_parent(tmp_path: Path) -> None:
    path = config_at(tmp_path)
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_config(deep, None, {}) == path


def test_explicit_path_and_environment_variable(tmp_path: Path) -> None:
    path = write(tmp_path / "conf" / "other.toml", BASE)
    elsewhere = tmp_path / "x"
    elsewhere.mkdir()
    assert find_config(elsewhere, str(path), {}) == path
    assert find_config(elsewhere, None, {"KEYRUN_CONFIG": str(path)}) == path
    assert find_config(elsewhere, "../conf/other.toml", {}) == path
    with pytest.raises(ConfigError, match="no such configuration file .named by KEYRUN_CONFIG"):
        find_config(elsewhere, None, {"KEYRUN_CONFIG": str(tmp_path / "nope.toml")})


def test_environment_choice(tmp_path: Path) -> None:
    config = load_config(tmp_path if config_at(tmp_path) else None, None, {})
    assert choose_env(config, None, {}) == "dev"
    assert choose_env(config, None, {"KEYRUN_ENV": "staging"}) == "staging"
    assert choose_env(config, "production", {"KEYRUN_ENV": "staging"}) == "production"
    with pytest.raises(ConfigError) as caught:
        choose_env(config, "stagin", {})
    assert "unknown environment 'stagin'" in caught.value.message
    assert caught.value.hint is not None
    assert "did you mean 'staging'?" in caught.value.hint


def test_extends_and_per_environment_keys(tmp_path: Path) -> None:
    config = load_config(tmp_path if config_at(tmp_path) else None, None, {})
    production = environment(config, "production")
    assert production.sources == ("other",)
    assert production.rotate_after == 90 * 86400
    assert production.timeout == 5
    assert production.pass_env == ("VAULT_TOKEN",)
    keys = {k.name: k for k in production.keys}
    assert keys["DATABASE_URL"].source == "local"
    assert keys["DATABASE_URL"].backend == "db/url"
    assert keys["PINECONE_API_KEY"].optional
    assert keys["ANTHROPIC_API_KEY"].description == "Claude API key"
    dev = {k.name: k for k in environment(config, "dev").keys}
    assert dev["DATABASE_URL"].backend == "db-url"
    assert dev["DATABASE_URL"].source is None


def test_templates_and_relative_paths(tmp_path: Path) -> None:
    config_at(tmp_path)
    write(tmp_path / "other" / "support-bot-staging.env",
          "OPENAI_API_KEY=a1\nANTHROPIC_API_KEY=a2\ndb-url=postgres://x\n")
    write(tmp_path / "other" / "renamed-staging.env", "OPENAI_API_KEY=b1\n")
    resolution = fetch_profile(open_profile("staging", cwd=tmp_path, environ={}))
    assert resolution.values() == {"OPENAI_API_KEY": "a1", "ANTHROPIC_API_KEY": "a2",
                                   "DATABASE_URL": "postgres://x"}
    renamed = fetch_profile(open_profile("staging", cwd=tmp_path, environ={}, project="renamed"))
    assert renamed.values() == {"OPENAI_API_KEY": "b1"}


def test_first_source_wins(tmp_path: Path) -> None:
    config_at(tmp_path, BASE.replace('[env.dev]\nsources = ["local"]',
                                     '[env.dev]\nsources = ["local", "other"]'))
    write(tmp_path / ".env", "OPENAI_API_KEY=from-local\n")
    write(tmp_path / "other" / "support-bot-dev.env",
          "OPENAI_API_KEY=from-other\nANTHROPIC_API_KEY=only-other\ndb-url=d\n")
    resolution = fetch_profile(open_profile("dev", cwd=tmp_path, environ={}))
    assert resolution.values()["OPENAI_API_KEY"] == "from-local"
    assert resolution.values()["ANTHROPIC_API_KEY"] == "only-other"
    assert resolution.results["ANTHROPIC_API_KEY"].source == "other"


def test_field_picks_from_json(tmp_path: Path) -> None:
    config_at(tmp_path, """
[keys]
API_KEY = { name = "CREDS", field = "api_key" }
[sources.local]
type = "dotenv"
[env.dev]
sources = ["local"]
""")
    write(tmp_path / ".env", """CREDS='{"api_key": "k-123", "n": 5}'\n""")
    assert fetch_profile(open_profile(None, cwd=tmp_path, environ={})).values() == {
        "API_KEY": "k-123"}


def test_example_names_are_required_keys(tmp_path: Path) -> None:
    config_at(tmp_path)
    write(tmp_path / ".env.example", "OPENAI_API_KEY=your-key\nSERPAPI_KEY=changeme\n")
    config = load_config(tmp_path, None, {})
    keys = {k.name: k for k in environment(config, "dev").keys}
    assert "SERPAPI_KEY" in keys
    assert not keys["SERPAPI_KEY"].optional
    assert keys["PINECONE_API_KEY"].optional  # [keys] says otherwise


def test_example_values_are_never_used(tmp_path: Path) -> None:
    write(tmp_path / ".env.example", "OPENAI_API_KEY=placeholder-value\n")
    resolution = fetch_profile(open_profile(None, cwd=tmp_path, environ={}) if (
        write(tmp_path / ".env", "OTHER=1\n")) else None)
    assert resolution.results["OPENAI_API_KEY"].status == "missing"


def test_zero_config(tmp_path: Path) -> None:
    write(tmp_path / ".env", "OPENAI_API_KEY=base\nSHARED=from-base\n")
    write(tmp_path / ".env.staging", "OPENAI_API_KEY=staging\n")
    staging = fetch_profile(open_profile("staging", cwd=tmp_path, environ={}))
    assert staging.values() == {"OPENAI_API_KEY": "staging", "SHARED": "from-base"}
    assert staging.profile.project == tmp_path.name
    dev = fetch_profile(open_profile(None, cwd=tmp_path, environ={}))
    assert dev.profile.env.name == "dev"
    assert dev.values() == {"OPENAI_API_KEY": "base", "SHARED": "from-base"}
    assert load_config(tmp_path, None, {}).env_names() == ["dev", "staging"]


def test_zero_config_with_example(tmp_path: Path) -> None:
    write(tmp_path / ".env", "OPENAI_API_KEY=base\nEXTRA=1\n")
    write(tmp_path / ".env.example", "OPENAI_API_KEY=\nMISSING_ONE=\n")
    resolution = fetch_profile(open_profile(None, cwd=tmp_path, environ={}))
    assert list(resolution.results) == ["OPENAI_API_KEY", "MISSING_ONE"]
    assert resolution.results["MISSING_ONE"].status == "missing"


def test_zero_config_with_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nothing to load"):
        open_profile(None, cwd=tmp_path, environ={})


def test_unknown_top_level_key_names_file_and_line(tmp_path: Path) -> None:
    text = BASE.replace('default_env = "dev"', 'default_env = "dev"\ndefualt_timeout = 3')
    message = error_of(tmp_path, text)
    assert f"{tmp_path / 'keyrun.toml'}:4: defualt_timeout: unknown key 'defualt_timeout'" in message
    assert "valid keys here: project, default_env, keys, sources, env" in message


def test_unknown_key_option(tmp_path: Path) -> None:
    message = error_of(tmp_path, BASE.replace("{ optional = true }", "{ optinal = true }"))
    assert ":8: [keys] PINECONE_API_KEY optinal: unknown key 'optinal'" in message
    assert "valid keys here: name, field, version, optional, description, source" in message


def test_unknown_env_option(tmp_path: Path) -> None:
    message = error_of(tmp_path, BASE.replace('rotate_after = "90d"', 'rotate_afer = "90d"'))
    assert ":24: [env.staging] rotate_afer: unknown key 'rotate_afer'" in message
    assert "rotate_after" in message


def test_wrong_types(tmp_path: Path) -> None:
    assert "must be true or false, not a string" in error_of(
        tmp_path, BASE.replace("{ optional = true }", '{ optional = "yes" }'))
    assert "must be a list of strings, not a string" in error_of(
        tmp_path, BASE.replace('sources = ["local"]', 'sources = "local"'))
    assert "'90 days' is not a duration" in error_of(
        tmp_path, BASE.replace('"90d"', '"90 days"'))
    assert "must be a table, not a string" in error_of(
        tmp_path, BASE.replace("OPENAI_API_KEY = {}", 'OPENAI_API_KEY = "x"'))


def test_references_are_checked(tmp_path: Path) -> None:
    message = error_of(tmp_path, BASE.replace('sources = ["local"]', 'sources = ["locl"]'))
    assert "[env.dev] sources: unknown source 'locl'" in message
    assert "sources: local, other" in message
    message = error_of(tmp_path, BASE.replace('extends = "staging"', 'extends = "stagign"'))
    assert "unknown environment 'stagign'" in message
    message = error_of(tmp_path, BASE.replace('default_env = "dev"', 'default_env = "qa"'))
    assert "default_env: unknown environment 'qa'" in message


def test_extends_cycle(tmp_path: Path) -> None:
    text = BASE.replace('[env.staging]\n', '[env.staging]\nextends = "production"\n')
    assert "extends forms a cycle: production → staging → production" in error_of(tmp_path, text) \
        or "extends forms a cycle: staging → production → staging" in error_of(tmp_path, text)


def test_environment_without_sources(tmp_path: Path) -> None:
    message = error_of(tmp_path, BASE + '\n[env.qa]\nrotate_after = "1d"\n')
    assert "environment 'qa' has no sources" in message


def test_toml_syntax_error_has_a_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, BASE.replace('project = "support-bot"', 'project = "support-bot'))
    assert f"{tmp_path / 'keyrun.toml'}:2: invalid TOML" in message


def test_source_options_are_validated_by_the_source(tmp_path: Path) -> None:
    config_at(tmp_path, BASE.replace('path = ".env"', 'pth = ".env"'))
    with pytest.raises(ConfigError) as caught:
        open_profile("dev", cwd=tmp_path, environ={})
    assert "[sources.local] pth: unknown option 'pth' for a dotenv source" in caught.value.message
    assert caught.value.hint == "valid options: type, path"


def test_unknown_source_type(tmp_path: Path) -> None:
    config_at(tmp_path, BASE.replace('type = "dotenv"\npath = ".env"', 'type = "dotenvv"'))
    with pytest.raises(ConfigError) as caught:
        open_profile("dev", cwd=tmp_path, environ={})
    assert "unknown source type 'dotenvv'" in caught.value.message
    assert caught.value.hint is not None
    assert "dotenv, keyring, aws-secrets-manager" in caught.value.hint


def test_unknown_placeholder(tmp_path: Path) -> None:
    config_at(tmp_path, BASE.replace('"other/{project}-{env}.env"', '"other/{projcet}.env"'))
    with pytest.raises(ConfigError, match=r"unknown placeholder \{projcet\}"):
        open_profile("staging", cwd=tmp_path, environ={})


def test_version_pin_on_an_unversioned_source(tmp_path: Path) -> None:
    config_at(tmp_path, BASE.replace("OPENAI_API_KEY = {}", 'OPENAI_API_KEY = { version = "3" }'))
    with pytest.raises(ConfigError, match="pins version '3' but source local .dotenv. has no versions"):
        open_profile("dev", cwd=tmp_path, environ={})


def test_a_chain_of_3000_extends_is_checked_in_linear_time(tmp_path: Path) -> None:
    import time

    tables = ['project = "p"\ndefault_env = "e2999"\n[sources.local]\ntype = "dotenv"\n'
              '[env.e0]\nsources = ["local"]\n']
    tables += [f'[env.e{i}]\nextends = "e{i - 1}"\n' for i in range(1, 3000)]
    config_at(tmp_path, "".join(tables))
    started = time.monotonic()
    config = load_config(tmp_path, None, {})
    names = config.env_names()
    last = environment(config, "e2999")
    elapsed = time.monotonic() - started
    # 0.09 s here; a walk per environment took 1.3 s for 300, so about 130 s for 3000
    assert elapsed < 2.0, elapsed
    assert (len(names), last.sources) == (3000, ("local",))
    # a cycle at the far end of the chain is still found, naming its loop
    looped = "".join(tables).replace('[env.e0]\nsources = ["local"]\n',
                                     '[env.e0]\nsources = ["local"]\nextends = "e2999"\n')
    assert error_of(tmp_path, looped).startswith(
        f"{tmp_path / 'keyrun.toml'}:5: [env.e0]: extends forms a cycle: e0 → e2999 → e2998 → ")


def test_a_base_environment_several_deep(tmp_path: Path) -> None:
    config_at(tmp_path, BASE + '\n[env.common]\nrotate_after = "90d"\n'
              '[env.shared]\nextends = "common"\n[env.qa]\nextends = "shared"\n'
              'sources = ["local"]\n')
    config = load_config(tmp_path, None, {})
    assert config.env_names() == ["dev", "staging", "production", "qa"]
    assert config.bases == {"common", "shared"}


def test_access_log_is_true_or_false(tmp_path: Path) -> None:
    config_at(tmp_path, "access_log = false\n" + BASE)
    assert load_config(tmp_path, None, {}).access_log is False
    message = error_of(tmp_path, 'access_log = "off"\n' + BASE)
    assert message == (f"{tmp_path / 'keyrun.toml'}:1: access_log: must be true or false, "
                       "not a string\nwrite access_log = false to keep no access log (for "
                       "images that are read-only by design)")
