"""Alembic migrations of the reader study database (db.py); run by db.upgrade."""
