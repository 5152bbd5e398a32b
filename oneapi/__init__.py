"""oneapi-py: the project package (settings, ASGI, the Celery app, URLs).

The Celery app is not imported here, unlike Django's usual recipe: web processes would load
Celery, kombu and their dependencies (~7 MB) on start for jobs a relay node never queues. Task
modules import `oneapi.celery` themselves, and `celery -A oneapi` finds it as `oneapi.celery`.
"""
