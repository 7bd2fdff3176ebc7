"""Users, roles and the audit log. Local single-user mode: the actor is the OS user."""

from mloop.security.audit import AuditLog, AuditRecord, local_actor

__all__ = ["AuditLog", "AuditRecord", "local_actor"]
