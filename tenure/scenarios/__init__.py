"""The built-in scenario library (TOML files shipped with the package)."""
