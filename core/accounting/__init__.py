"""What the gateway keeps for a team: its database (SQLite or PostgreSQL), the virtual
keys it hands out and the usage ledger of what each spent."""

from .database import DATABASE_VARIABLE, Database, open_database, redacted_url
from .schema import MIGRATIONS, current_version, migrate

__all__ = ["DATABASE_VARIABLE", "MIGRATIONS", "Database", "current_version", "migrate",
           "open_database", "redacted_url"]
