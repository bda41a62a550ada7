"""The names the spine's Celery tasks are registered under (`inference.tasks`).

The modules that queue them send them by name: `inference.tasks` imports the worker side
(`inference.execution`, `inference.reaper`), so a module of that side importing the tasks
back would be an import cycle.
"""

RUN_PREDICTION = "inference.tasks.run_prediction"
DELIVER_WEBHOOK = "inference.tasks.deliver_webhook"
