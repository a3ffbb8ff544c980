"""The serving plugin's exceptions (``serving_patch`` depends on no other QuotaFlow package).

    ServingPatchError           base; ``exit_code`` is what ``quotaflow serve`` exits with
    ├── ConfigError             bad configuration or installation (exit 2)
    │   └── UnsupportedVLLMError    the installed vLLM is not the series the plugin hooks
    └── BadInputError           bad user input: says which input and what was expected (exit 2)

The exit codes match the runtime's ``orchestrator.errors`` classes of the same names.
"""

from __future__ import annotations

__all__ = ["BadInputError", "ConfigError", "ServingPatchError", "UnsupportedVLLMError"]


class ServingPatchError(Exception):
    """Base class of every error the serving plugin and its launcher raise on purpose."""

    exit_code = 1


class ConfigError(ServingPatchError):
    """The configuration or the installation cannot work; the message says what to change."""

    exit_code = 2


class UnsupportedVLLMError(ConfigError):
    """The installed vLLM is not one the Continuum plugin supports."""


class BadInputError(ServingPatchError):
    """Input that does not have the expected shape.

    ``what`` names the input (an option, an argument), ``expected`` says what would be valid.
    """

    exit_code = 2

    def __init__(self, what: str, expected: str, detail: str = "") -> None:
        self.what = what
        self.expected = expected
        self.detail = detail
        msg = f"{what}: expected {expected}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)
