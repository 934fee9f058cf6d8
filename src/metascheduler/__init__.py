"""metascheduler: a meta-scheduler for a grid of HPC providers paid in on-chain credits."""

__version__ = "0.1.0"
