"""``python -m asgiws APP [options]``: the same as the ``asgiws`` command."""

from asgiws.cli import main

if __name__ == "__main__":
    main()
