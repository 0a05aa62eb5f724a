"""The store: SQLAlchemy Core tables, engine set-up, migrations and queries."""
