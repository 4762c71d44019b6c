"""The migration head the commands compare with is the newest migration."""

from __future__ import annotations


def test_the_head_revision_is_the_newest_migration() -> None:
    from alembic.script import ScriptDirectory

    from loyalty.db.migrate import HEAD_REVISION, alembic_config

    script = ScriptDirectory.from_config(alembic_config("sqlite:///unused.db"))
    assert script.get_current_head() == HEAD_REVISION
