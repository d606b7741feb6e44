"""Where the command line finds the API and the user: flags, then environment, then a profile.

The profile file is TOML, `~/.config/taskqueue/config.toml` (or `$XDG_CONFIG_HOME/taskqueue`,
or `$TQ_CONFIG_DIR`), one table per profile:

    [default]
    url = "https://abc123.execute-api.eu-west-1.amazonaws.com"
    cognito_domain = "https://tasks-0f1e.auth.eu-west-1.amazoncognito.com"
    client_id = "4kq3..."

    [local]
    url = "http://127.0.0.1:8000"
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

DEFAULT_PROFILE = "default"
PROFILE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Setting -> environment variable, as data: the same names in the docs, `make dev` and here.
ENVIRONMENT = {
    "url": "TQ_URL",
    "token": "TQ_TOKEN",
    "cognito_domain": "TQ_COGNITO_DOMAIN",
    "client_id": "TQ_CLIENT_ID",
}
PROFILE_VARIABLE = "TQ_PROFILE"


class ConfigError(ValueError):
    """The configuration is missing something or cannot be read."""


@dataclass
class Profile:
    name: str = DEFAULT_PROFILE
    url: str | None = None
    # A JWT given outright (flag, TQ_TOKEN or the file); `tq login` keeps its tokens apart.
    token: str | None = None
    cognito_domain: str | None = None
    client_id: str | None = None

    def require_url(self) -> str:
        if not self.url:
            raise ConfigError(
                f"no API URL: pass --url, set {ENVIRONMENT['url']}, or run "
                f"`tq configure --url URL` (profile {self.name!r})"
            )
        return self.url


def config_dir(environ: Mapping[str, str] = os.environ) -> Path:
    if environ.get("TQ_CONFIG_DIR"):
        return Path(environ["TQ_CONFIG_DIR"])
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "taskqueue"


def read_profiles(path: Path) -> dict[str, dict[str, str]]:
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    known = {f.name for f in fields(Profile)} - {"name"}
    profiles: dict[str, dict[str, str]] = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{name}] must be a table of settings")
        unknown = set(table) - known
        if unknown:
            raise ConfigError(f"{path}: [{name}] has unknown settings {sorted(unknown)}")
        profiles[name] = {key: str(value) for key, value in table.items()}
    return profiles


def load_profile(
    name: str | None = None,
    *,
    overrides: Mapping[str, str | None] | None = None,
    environ: Mapping[str, str] = os.environ,
    directory: Path | None = None,
) -> Profile:
    """The settings in force: `overrides` (flags), then environment, then the profile file."""
    chosen = name or environ.get(PROFILE_VARIABLE) or DEFAULT_PROFILE
    stored = read_profiles((directory or config_dir(environ)) / "config.toml")
    if name and chosen not in stored and chosen != DEFAULT_PROFILE:
        raise ConfigError(f"no profile {chosen!r} (known: {', '.join(sorted(stored)) or 'none'})")
    settings = dict(stored.get(chosen, {}))
    for setting, variable in ENVIRONMENT.items():
        if environ.get(variable):
            settings[setting] = environ[variable]
    for setting, value in (overrides or {}).items():
        if value:
            settings[setting] = value
    return Profile(name=chosen, **settings)


def save_profile(profile: Profile, directory: Path | None = None) -> Path:
    """Write (or replace) the profile's table, keeping the other profiles."""
    if not PROFILE_NAME.match(profile.name):
        raise ConfigError(f"profile names are letters, digits, _ and - (not {profile.name!r})")
    path = (directory or config_dir()) / "config.toml"
    profiles = read_profiles(path)
    profiles[profile.name] = {
        f.name: value
        for f in fields(Profile)
        if f.name != "name" and (value := getattr(profile, f.name))
    }
    lines: list[str] = []
    for name, table in profiles.items():
        lines.append(f"[{name}]")
        # TOML basic strings take JSON's escapes.
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in table.items())
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
