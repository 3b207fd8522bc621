"""`python -m drrkit ...` runs the CLI without an installed console script."""

from cli.app import main

if __name__ == "__main__":
    main()
