"""Exception and warning types raised by pytest-mlperf, one base class for each."""

from __future__ import annotations


class MLPerfError(Exception):
    """Base class of every error pytest-mlperf raises on purpose."""


class ConfigError(MLPerfError):
    """A configuration file or value is malformed; the message names the file, line or option."""


class ProvisioningError(MLPerfError):
    """A model or dataset could not be provided; the message names the asset, the URL and the remedy."""


class ModelError(MLPerfError):
    """A model file is missing, corrupt or unusable by the chosen backend."""


class LoadGenError(MLPerfError):
    """LoadGen refused the settings or a run could not be completed."""


class LoadGenStalled(LoadGenError):
    """A run whose engine stopped answering, which LoadGen cannot finish: the session must end."""


class InferenceError(MLPerfError):
    """The backend raised during a LoadGen run; the original exception is chained as ``__cause__``."""


class MLPerfWarning(UserWarning):
    """A non-fatal problem worth the user's attention (e.g. a best-effort write that failed)."""
