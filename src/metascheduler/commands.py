"""Commands of the `metascheduler` CLI that the services name in their messages, kept here so
that a message never names a command that does not exist (tests/unit/test_cli_parsing.py runs
each one's --help)."""

#: What an operator runs to approve a registered provider (format with `provider=`).
APPROVE_PROVIDER = "metascheduler admin approve-provider {provider}"
