"""Where the API key, base URL and other settings come from.

Precedence, highest first: environment variable, then the config file written by Settings → Runflow
(``<ComfyUI user dir>/runflow/config.json``, owner-only permissions), then the default.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..runflow.contract import DEFAULT_API_URL
from ..runflow.errors import KEY_HELP, ConfigError, mask_key

log = logging.getLogger(__name__)

ENV_KEY = "RUNFLOW_API_KEY"
ENV_URL = "RUNFLOW_API_URL"
ENV_PUBLIC_URL = "RUNFLOW_PUBLIC_URL"
ENV_WEBHOOK_SECRET = "RUNFLOW_WEBHOOK_SECRET"
ENV_USER_DIR = "RUNFLOW_USER_DIR"
CONFIG_KEYS = ("api_key", "api_url", "public_url", "webhook_secret")
FALLBACK_USER_DIR = Path.home() / ".config" / "runflow-multi-angles"  # neither ComfyUI nor RUNFLOW_USER_DIR


def user_dir() -> Path:
    """The pack's folder in ComfyUI's user directory (never inside the pack, which updates replace).

    $RUNFLOW_USER_DIR/runflow; else, for the CLI run from an installed pack, <ComfyUI>/user/runflow; else
    ~/.config/runflow-multi-angles."""
    override = os.environ.get(ENV_USER_DIR)
    if override:  # inside ComfyUI, nodes/comfy/adapter.py sets it to ComfyUI's user directory at load time
        return Path(override).expanduser() / "runflow"
    # the CLI run from an installed pack (<ComfyUI>/custom_nodes/<pack>): share ComfyUI's key, cache and timing
    comfy_root = Path(__file__).resolve().parents[4]  # <ComfyUI>/custom_nodes/<pack>/nodes/core/config.py
    if (comfy_root / "main.py").is_file() and (comfy_root / "custom_nodes").is_dir():
        return comfy_root / "user" / "runflow"
    return FALLBACK_USER_DIR


def config_path() -> Path:
    return user_dir() / "config.json"


def read_config() -> dict:
    path = config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("Runflow: ignoring unreadable config file %s (%s)", path, type(exc).__name__)
        return {}
    return data if isinstance(data, dict) else {}


def write_config(updates: dict) -> dict:
    """Merge ``updates`` into the config file (empty string or None removes an entry); owner-only permissions."""
    data = read_config()
    for name, value in updates.items():
        if name not in CONFIG_KEYS:
            raise ConfigError(f"unknown Runflow setting {name!r}")
        if value in (None, ""):
            data.pop(name, None)
        else:
            data[name] = validate_setting(name, str(value).strip())
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".json")
    try:
        os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return data


def validate_setting(name: str, value: str) -> str:
    if name in ("api_url", "public_url"):
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"{name} must be an http(s) URL like https://api.runflow.io, got {value[:80]!r}")
        return value.rstrip("/")
    if name == "api_key":
        if any(c.isspace() for c in value) or len(value) < 8:
            raise ConfigError("that does not look like a Runflow API key (rf_live_…); paste it again")
    return value


@dataclass(frozen=True)
class Settings:
    api_key: str | None
    key_source: str | None
    api_url: str
    api_url_source: str
    public_url: str | None
    webhook_secret: str | None

    def require_key(self) -> str:
        if not self.api_key:
            raise ConfigError(f"No Runflow API key: {KEY_HELP} (get one at app.runflow.io → Settings → API Keys).")
        return self.api_key

    def public_status(self) -> dict:
        """What routes may show: never the key, at most its last 4 characters."""
        return {
            "key_configured": bool(self.api_key),
            "key_last4": self.api_key[-4:] if self.api_key and len(self.api_key) > 8 else None,
            "key_source": self.key_source,
            "api_url": self.api_url,
            "api_url_source": self.api_url_source,
            "public_url": self.public_url,
            "webhook_secret_configured": bool(self.webhook_secret),
            "config_path": str(config_path()),
        }

    def url_origin(self) -> str:
        """Where the API URL came from, in the words of the place a user would change it."""
        if self.api_url_source == "env":
            return ENV_URL
        if self.api_url_source == "config":
            return "Settings \u2192 Runflow \u2192 API URL"
        return f"the default API URL ({self.api_url})"

    def explain(self, message: str) -> str:
        """A client-library message that says "check RUNFLOW_API_URL", naming where this URL really came from."""
        return message.replace(ENV_URL, self.url_origin())

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        return f"Settings(api_key={mask_key(self.api_key)}, api_url={self.api_url!r}, public_url={self.public_url!r})"


def load_settings() -> Settings:
    cfg = read_config()

    def pick(env: str, name: str) -> tuple[str | None, str | None]:
        value = (os.environ.get(env) or "").strip()
        if value:
            return value, "env"
        value = str(cfg.get(name) or "").strip()
        return (value, "config") if value else (None, None)

    key, key_source = pick(ENV_KEY, "api_key")
    url, url_source = pick(ENV_URL, "api_url")
    public_url, _ = pick(ENV_PUBLIC_URL, "public_url")
    secret, _ = pick(ENV_WEBHOOK_SECRET, "webhook_secret")
    if url:
        url = validate_setting("api_url", url)
    return Settings(key, key_source, url or DEFAULT_API_URL, url_source or "default",
                    public_url.rstrip("/") if public_url else None, secret)
