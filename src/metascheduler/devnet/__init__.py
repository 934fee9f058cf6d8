"""The local devnet: anvil, deployment and demo wiring. The only anvil-specific code."""
