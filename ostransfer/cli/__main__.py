"""``python -m ostransfer.cli``."""

from . import main

if __name__ == "__main__":
    main()
