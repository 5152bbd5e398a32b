from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from accounts.bootstrap import ensure_root_account


class Command(BaseCommand):
    help = "Create the root account on first boot (no-op when users exist)."

    def handle(self, *args: Any, **options: Any) -> None:
        created = ensure_root_account()
        self.stdout.write("root account created" if created else "users exist; nothing to do")
