"""Alembic migrations of the rollouts store (shipped in the wheel)."""
