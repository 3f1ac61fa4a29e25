"""Indexing jobs: queued by a request, run one at a time in a background thread, followed by polling.

A job's state goes queued -> running -> done | failed | cancelled; while it runs, `done` and `total` count the
files (from `Collection.add(on_progress=...)`). Jobs live in memory: a restarted server forgets
them, and nothing is lost by that, because indexing is incremental (the next job finishes the work).
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from polymodal.errors import CollectionBusyError

log = logging.getLogger("polymodal.serve")

ACTIVE = ("queued", "running")


@dataclass
class Job:
    id: str
    collection: str
    paths: list[str]
    options: dict = field(default_factory=dict)  # prune, rehash, metadata, model
    state: str = "queued"
    done: int = 0  # files processed so far
    total: int | None = None  # files to process (known once the plan is made)
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    report: dict | None = None  # IndexReport.to_dict() when done
    error: dict | None = None  # {"error": type, "detail": message, "status": http status} when failed
    cancel_requested: bool = False

    def to_dict(self) -> dict:
        return {"id": self.id, "collection": self.collection, "paths": list(self.paths), "options": dict(self.options),
                "state": self.state, "done": self.done, "total": self.total, "created": self.created,
                "started": self.started, "finished": self.finished, "report": self.report, "error": self.error}


class JobManager:
    """Runs `runner(job, on_progress, should_stop)` for each submitted job, in order, in one daemon thread.

    One thread: indexing already uses every core (decoding threads plus the model), so two jobs at
    once would only fight. Two jobs for the same collection are never queued together (the second
    is refused with CollectionBusyError, as a second writer would be)."""

    def __init__(self, runner: Callable[[Job, Callable[[int, int], None], Callable[[], bool]], dict],
                 describe_error: Callable[[BaseException], dict], *, keep: int = 100):
        self._runner, self._describe_error, self._keep = runner, describe_error, keep
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}  # insertion order = submission order
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, collection: str, paths: list[str], options: dict) -> Job:
        with self._lock:
            if self._closed:
                raise CollectionBusyError("the server is shutting down; submit the job again once it is back")
            for job in self._jobs.values():
                if job.collection == collection and job.state in ACTIVE:
                    raise CollectionBusyError(
                        f"collection {collection!r} already has indexing job {job.id} {job.state}; "
                        f"wait for it (GET /api/jobs/{job.id}) and submit again")
            job = Job(secrets.token_hex(8), collection, list(paths), dict(options))
            self._jobs[job.id] = job
            self._forget_old()
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="polymodal-jobs", daemon=True)
                self._thread.start()
        self._queue.put(job)
        return job

    def cancel(self, job_id: str) -> dict | None:
        """Cancel a queued job at once, or ask a running one to stop after the files it has read
        (they are written; the next job finishes the rest). Finished jobs are left as they are."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if job.state == "queued":
                job.state, job.finished = "cancelled", time.time()
            elif job.state == "running":
                job.cancel_requested = True
            return job.to_dict()

    def get(self, job_id: str) -> dict | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return job.to_dict() if job else None

    def list(self, collection: str | None = None) -> list[dict]:
        with self._lock:
            return [j.to_dict() for j in reversed(self._jobs.values()) if collection in (None, j.collection)]

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new jobs, drop queued ones, and wait up to `timeout` s for the running one."""
        with self._lock:
            self._closed = True
            for job in self._jobs.values():
                if job.state == "queued":
                    job.state, job.finished = "failed", time.time()
                    job.error = {"error": "CollectionBusyError", "status": 503,
                                 "detail": "the server stopped before this job started; submit it again"}
            thread = self._thread
        self._queue.put(None)
        if thread is not None:
            thread.join(timeout)

    # -- the worker --------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                if job.state != "queued":  # cancelled by close()
                    continue
                job.state, job.started = "running", time.time()
            try:
                report = self._runner(job, lambda done, total: self._progress(job, done, total),
                                      lambda: job.cancel_requested)
            except Exception as exc:  # noqa: BLE001 - a job's failure is reported, never raised
                described = self._describe_error(exc)
                if described.get("status", 500) >= 500:
                    log.exception("indexing job %s failed", job.id)
                with self._lock:
                    job.state, job.error, job.finished = "failed", described, time.time()
            else:
                with self._lock:
                    job.state = "cancelled" if report.get("cancelled") else "done"
                    job.report, job.finished = report, time.time()
                    if job.total is None:
                        job.total = job.done

    def _progress(self, job: Job, done: int, total: int) -> None:
        with self._lock:
            job.done, job.total = int(done), int(total)

    def _forget_old(self) -> None:
        finished = [j.id for j in self._jobs.values() if j.state not in ACTIVE]
        for job_id in finished[: max(0, len(finished) - self._keep)]:
            del self._jobs[job_id]
