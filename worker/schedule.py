"""The beat schedule, all in one place. Every entry is a crontab (an interval would restart its
countdown at every deploy) and expires before its next run, so a backlog never piles up."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from coach.settings import Settings


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        "llm-probe": {
            "task": "coach.llm_probe",
            "schedule": crontab(minute="*"),
            "options": {"expires": 50},
        },
        "redeliver-lost-index-tasks": {
            "task": "coach.redeliver_lost",
            "schedule": crontab(minute="*"),
            "options": {"expires": 50},
        },
        "requeue-stale-pending": {
            "task": "coach.requeue_pending",
            "schedule": crontab(minute="*/5"),
            "options": {"expires": 240},
        },
        "remove-orphan-objects": {
            "task": "coach.remove_orphan_objects",
            "schedule": crontab(minute="29", hour=f"*/{settings.orphan_object_sweep_hours}"),
            "options": {"expires": settings.orphan_object_sweep_hours * 3600 - 60},
        },
        "clean-rotated-logs": {
            "task": "coach.clean_logs",
            "schedule": crontab(minute="43", hour="4"),
            "options": {"expires": 3600},
        },
        "purge-old-questions": {
            "task": "coach.cleanup",
            "schedule": crontab(minute="17", hour="3"),
            "kwargs": {"older_than_days": settings.question_retention_days},
            "options": {"expires": 3600},
        },
    }
