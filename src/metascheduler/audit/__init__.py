"""The audit: from the chain's logs and state alone (no database), a job's timeline and bill
checked against the contract's rules, and the whole grid's credits accounted for. Given the
API's stored results (`audit.results.StoredResults`), also every committed result digest
checked against the ciphertext stored.

    from metascheduler.audit import audit_job, audit_all
    report = audit_all(market)          # GridAudit; report.ok, report.to_json()
    job = audit_job(market, 7)          # JobAudit; job.steps, job.expected, job.discrepancies
    acct = audit_account(market, addr)  # AccountAudit; acct.movements, acct.balance, acct.ok
    report = audit_all(market, results=StoredResults.from_settings(api_settings))
"""

from metascheduler.audit.audit import AuditError, audit_account, audit_all, audit_job
from metascheduler.audit.model import (
    AccountAudit,
    Bill,
    Discrepancy,
    GridAudit,
    JobAudit,
    Movement,
    Step,
)
from metascheduler.audit.rules import History, replay_job

__all__ = [
    "AccountAudit",
    "AuditError",
    "Bill",
    "Discrepancy",
    "GridAudit",
    "History",
    "JobAudit",
    "Movement",
    "Step",
    "audit_account",
    "audit_all",
    "audit_job",
    "replay_job",
]
