"""`python -m metascheduler.cli`, the same as the `metascheduler` command."""

from metascheduler.cli.app import main

main()
