"""The saved login (`lt login`): relay host + token in the user's config directory.

The file is JSON, mode 0600, in `platformdirs.user_config_dir("tunnelsite")`, or in
`$LT_CONFIG_DIR` when set (tests and containers use that to stay out of $HOME).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_DIR_ENV = "LT_CONFIG_DIR"
LOGIN_FILE = "login.json"


@dataclass(frozen=True)
class Login:
    host: str = field(repr=False)  # may hold a token (user-info)
    token: str = field(repr=False)


def config_dir() -> Path:
    override = os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override)
    from platformdirs import user_config_dir

    return Path(user_config_dir("tunnelsite"))


def login_path() -> Path:
    return config_dir() / LOGIN_FILE


def save_login(login: Login) -> Path:
    """Write the login atomically; the file is never readable by others, even briefly."""
    path = login_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, json.dumps({"host": login.host, "token": login.token}).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def load_login() -> Login | None:
    """The saved login, or None when there is none or it is unreadable."""
    try:
        data = json.loads(login_path().read_text())
        return Login(host=str(data["host"]), token=str(data["token"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def delete_login() -> bool:
    """Remove the saved login; True when there was one."""
    try:
        login_path().unlink()
    except FileNotFoundError:
        return False
    return True
