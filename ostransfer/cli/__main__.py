"""``python -m ostransfer.cli``."""

from . import main

main()
