"""Progress of long work shows in /metrics while it runs, and in the log."""

from __future__ import annotations

import logging
import time

import pytest

from proximadb import progress
from proximadb.service.unified import UnifiedAvroService
from proximadb.storage.engine import Engine


def test_running_tasks_are_rendered_and_logged(tmp_path, caplog, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(progress, "LOG_EVERY_SECONDS", 0.0)
    with Engine.open(tmp_path / "d") as engine:
        service = UnifiedAvroService(engine)
        with caplog.at_level(logging.INFO, logger="proximadb.progress"), \
                progress.track("compaction", "docs", total=1000) as task:
            time.sleep(0.01)
            task.update(250)
            text = service.metrics.render()
            assert 'proximadb_task_done{task="compaction",collection="docs"} 250' in text
            assert 'proximadb_task_total{task="compaction",collection="docs"} 1000' in text
            assert 'proximadb_task_seconds{task="compaction",collection="docs"}' in text
        assert "compaction of docs: 250 rows of 1,000 (25%), ETA" in caplog.text
        assert 'task="compaction"' not in service.metrics.render()  # finished tasks disappear
