"""The built-in recipe files (``*.toml``); a package so that setuptools ships them as package data."""
