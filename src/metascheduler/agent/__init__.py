"""The provider agent: runs the jobs placed on one provider on its cluster (Slurm, or local
processes) and reports each step on chain. ``service.run(settings)`` runs it;
``python -m metascheduler.agent --config FILE`` and ``metascheduler agent run`` start it."""
