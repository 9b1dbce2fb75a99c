"""Where the API key, base URL and other settings come from, and where a key may go.

Precedence, highest first: environment variable, then the config file written by Settings → Runflow
(``<ComfyUI user dir>/runflow/config.json``, owner-only permissions), then the default.

Where a key may go (the one rule; see README → Security):
- ``RUNFLOW_API_URL`` in the process environment: used with ``RUNFLOW_API_KEY`` from the environment (or, for a
  loopback sandbox URL, the stored ``sandbox_key``); never with the stored real key.
- otherwise the stored ``api_url``, which can only be Runflow's API (https://api.runflow.io, the default) or a
  loopback sandbox (``http://127.0.0.1:…``/``localhost``). Runflow's API gets the real key (env, else stored); a
  loopback sandbox gets the stored ``sandbox_key`` only, never the real key. Any other stored URL is refused when
  written and, if found in an old config file, makes every run fail with a message (the key is not sent).
- plain ``http://`` to a non-loopback host is refused everywhere (runflow/urlsafety.py).
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
from ..runflow.urlsafety import check_api_url, is_sandbox_url

log = logging.getLogger(__name__)

ENV_KEY = "RUNFLOW_API_KEY"
ENV_URL = "RUNFLOW_API_URL"
ENV_PUBLIC_URL = "RUNFLOW_PUBLIC_URL"
ENV_WEBHOOK_SECRET = "RUNFLOW_WEBHOOK_SECRET"
ENV_USER_DIR = "RUNFLOW_USER_DIR"
ENV_CALLBACK_HOSTS = "RUNFLOW_CALLBACK_HOSTS"
ENV_DAILY_USD = "RUNFLOW_MAX_SPEND_PER_DAY"
ENV_DAILY_RUNS = "RUNFLOW_MAX_RUNS_PER_DAY"
CONFIG_KEYS = ("api_key", "api_url", "public_url", "webhook_secret", "sandbox_key", "callback_hosts",
               "max_spend_per_day", "max_runs_per_day")
SECRET_KEYS = ("api_key", "webhook_secret", "sandbox_key")
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


def store_settings(updates: dict) -> dict:
    """What Settings → Runflow posts: ``api_key`` is the key for the API URL in effect after this update, so while
    that URL is a loopback sandbox it is stored as ``sandbox_key`` (the real key is never replaced or reused)."""
    updates = dict(updates)
    if "api_key" in updates:
        env_url = (os.environ.get(ENV_URL) or "").strip()
        target = env_url or str(updates.get("api_url", read_config().get("api_url")) or "").strip()
        if target and is_sandbox_url(target):
            updates["sandbox_key"] = updates.pop("api_key")
    return write_config(updates)


def validate_setting(name: str, value: str) -> str:
    if name in ("api_url", "public_url"):
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"{name} must be an http(s) URL like https://api.runflow.io, got {value[:80]!r}")
        value = value.rstrip("/")
        if name == "api_url":
            check_api_url(value, "api_url")
        if name == "api_url" and not stored_url_allowed(value):
            raise ConfigError(f"api_url can only be {DEFAULT_API_URL} or a sandbox on this machine "
                              f"(http://127.0.0.1:<port>); got {value[:80]!r}. For another API (staging, a proxy), "
                              f"start ComfyUI with {ENV_URL} and {ENV_KEY} in its environment.")
        return value
    if name in ("api_key", "sandbox_key"):
        if any(c.isspace() for c in value) or len(value) < 8 or not value.isprintable():
            raise ConfigError("that does not look like a Runflow API key (rf_live_…); paste it again")
    if name == "callback_hosts":
        hosts = [h.strip().lower() for h in value.split(",") if h.strip()]
        if any(not h.replace(".", "").replace("-", "").replace(":", "").isalnum() for h in hosts):
            raise ConfigError("callback_hosts is a comma-separated list of host names, like hooks.example.com")
        return ",".join(hosts)
    if name in ("max_spend_per_day", "max_runs_per_day"):
        try:
            if float(value) < 0:
                raise ValueError
        except ValueError:
            raise ConfigError(f"{name} must be a number ≥ 0 (0 = no limit), got {value[:20]!r}") from None
    return value


def stored_url_allowed(url: str) -> bool:
    """A URL the config file (Settings, i.e. anything a browser can reach) may point the key at."""
    return url == DEFAULT_API_URL or is_sandbox_url(url)


@dataclass(frozen=True)
class Settings:
    api_key: str | None  # the key for ``api_url`` (the real key, or a sandbox's), chosen by the rule above
    key_source: str | None
    api_url: str
    api_url_source: str
    public_url: str | None
    webhook_secret: str | None
    problem: str | None = None  # why no key may be used with this URL (an old config's foreign api_url)
    callback_hosts: tuple[str, ...] = ()
    max_spend_per_day: float | None = None  # None: the default; 0: no limit
    max_runs_per_day: int | None = None

    @property
    def sandbox(self) -> bool:
        return is_sandbox_url(self.api_url)

    def require_key(self) -> str:
        if self.problem:
            raise ConfigError(self.problem)
        if not self.api_key:
            if self.sandbox:
                raise ConfigError(f"No key for the sandbox at {self.api_url}: paste the sandbox's key in Settings → "
                                  f"Runflow → API key while this URL is set, or set {ENV_KEY} next to {ENV_URL} "
                                  "(your stored real key is never sent to a sandbox).")
            raise ConfigError(f"No Runflow API key: {KEY_HELP} (get one at app.runflow.io → Settings → API Keys).")
        return self.api_key

    def public_status(self, *, local: bool = True) -> dict:
        """What routes may show: never the key, at most its last 4 characters; paths only to local clients."""
        out = {
            "key_configured": bool(self.api_key) and not self.problem,
            "key_last4": self.api_key[-4:] if self.api_key and len(self.api_key) > 8 else None,
            "key_source": self.key_source,
            "key_for": "sandbox" if self.sandbox else "runflow",
            "api_url": self.api_url,
            "api_url_source": self.api_url_source,
            "problem": self.problem,
            "public_url": self.public_url,
            "webhook_secret_configured": bool(self.webhook_secret),
            "callback_hosts": list(self.callback_hosts),
        }
        if local:
            out["config_path"] = str(config_path())
        return out

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

    public_url, _ = pick(ENV_PUBLIC_URL, "public_url")
    secret, _ = pick(ENV_WEBHOOK_SECRET, "webhook_secret")
    hosts, _ = pick(ENV_CALLBACK_HOSTS, "callback_hosts")
    usd, _ = pick(ENV_DAILY_USD, "max_spend_per_day")
    runs, _ = pick(ENV_DAILY_RUNS, "max_runs_per_day")
    try:  # a bad value makes every run fail with its message (fail closed); the Settings panel still opens
        url, url_source, key, key_source, problem = _destination(cfg)
        max_usd, max_runs = _number(ENV_DAILY_USD, usd, float), _number(ENV_DAILY_RUNS, runs, int)
    except ConfigError as exc:
        url, url_source, key, key_source, problem = DEFAULT_API_URL, "default", None, None, exc.message
        max_usd = max_runs = None
    return Settings(key, key_source, url, url_source, public_url.rstrip("/") if public_url else None, secret,
                    problem=problem, callback_hosts=tuple(h.strip().lower() for h in (hosts or "").split(",")
                                                          if h.strip()),
                    max_spend_per_day=max_usd, max_runs_per_day=max_runs)


def _destination(cfg: dict) -> tuple[str, str, str | None, str | None, str | None]:
    """(api_url, its source, key, key source, problem): the rule in the module docstring, in one place."""
    env_url = (os.environ.get(ENV_URL) or "").strip().rstrip("/")
    env_key = (os.environ.get(ENV_KEY) or "").strip() or None
    stored_key = str(cfg.get("api_key") or "").strip() or None
    sandbox_key = str(cfg.get("sandbox_key") or "").strip() or None
    if env_url:  # the process's own choice: a browser or a workflow cannot change it
        check_api_url(env_url)
        if env_key:
            return env_url, "env", env_key, "env", None
        if is_sandbox_url(env_url) and sandbox_key:
            return env_url, "env", sandbox_key, "config", None
        if env_url == DEFAULT_API_URL and stored_key:  # Runflow itself: the stored real key may go there
            return env_url, "env", stored_key, "config", None
        return env_url, "env", None, None, None
    url = str(cfg.get("api_url") or "").strip().rstrip("/")
    if not url or url == DEFAULT_API_URL:
        if env_key:
            return DEFAULT_API_URL, "config" if url else "default", env_key, "env", None
        return DEFAULT_API_URL, "config" if url else "default", stored_key, "config" if stored_key else None, None
    if is_sandbox_url(url):
        return url, "config", sandbox_key, "config" if sandbox_key else None, None
    return url, "config", None, None, (
        f"the stored api_url {url[:80]!r} is neither {DEFAULT_API_URL} nor a sandbox on this machine, so no key is "
        f"sent to it. Reset it in Settings → Runflow → API URL, or set {ENV_URL} and {ENV_KEY} in ComfyUI's "
        "environment for another API.")


def _number(name: str, raw: str | None, kind: type) -> float | int | None:
    if raw is None or raw == "":
        return None
    try:
        value = kind(float(raw)) if kind is int else kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number (0 = no limit), got {raw[:20]!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must be ≥ 0 (0 = no limit), got {raw[:20]!r}")
    return value
