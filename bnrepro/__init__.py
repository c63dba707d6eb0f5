"""bnrepro: reproduce the claims of the Batch Normalization paper and the work that tested it."""


class ConfigError(ValueError):
    """Bad user input. The train entry point prints it as one line and exits non-zero."""
