"""``python -m labloop`` is the ``labloop`` command."""

from .cli import main

main()
