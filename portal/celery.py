import gc
import os

from celery import Celery, Task
from celery.signals import task_postrun, task_prerun, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _return_database_connections(sender: Task, **kwargs: object) -> None:
    """Hands the task's database connections back to the pool, as Django does around a
    request (`CELERY_DB_REUSE_MAX` keeps Celery's own fixup from closing the whole pool
    around every task: each task then paid for new PostgreSQL sessions). The fixup still
    closes the pool a forked child inherits, which must never be shared."""
    from django.db import close_old_connections

    # A task run in place (`apply`, eager mode) runs inside its caller's transaction.
    if not getattr(sender.request, "is_eager", False):
        close_old_connections()


@worker_init.connect
def load_runners_and_freeze(**kwargs: object) -> None:
    """In the worker's main process, before its pool forks. The runners (torch,
    transformers) load here once, shared copy-on-write by the pool's children, instead of
    in each child on its first task (the web process never loads them, so they are not
    imported at module level). Then everything loaded is out of the collector's reach: a
    full collection walking it paused token streaming for over 100 ms."""
    from inference.runners import runners

    runners()
    gc.freeze()
