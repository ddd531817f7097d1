"""`python -m nanobrain` is the `nanobrain` command."""

from nanobrain.interfaces.cli import main

if __name__ == "__main__":
    main()
