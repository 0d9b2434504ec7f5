"""`python -m mertk` is the same as the `mertk` command."""
from mertk.cli.app import main

main()
