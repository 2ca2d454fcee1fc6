"""The base of errors caused by what a user declared or supplied (a problem YAML, its data, a
model's parameters). Their messages name the offending value; the CLI prints them without a
traceback. Kept free of heavy imports so entry points can catch them cheaply."""

from __future__ import annotations


class UserInputError(ValueError):
    """A problem declaration, data source or model setting that cannot be used as given."""
