"""Durable state: incidents with every transition, remediation runs, and the audit chain.

SQLite under the state dir by default, any SQLAlchemy URL (PostgreSQL) for larger set-ups.
"""
