"""The error for bad user input, in a module of its own so that the schema (imported by the package itself, to
register the config defaults) can raise it."""


class ConfigError(ValueError):
    """Bad user input. The train entry point prints it as one line and exits non-zero."""
