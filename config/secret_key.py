"""The secret key of a checkout without SECRET_KEY: kept in a file, read or made at first use."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

_making = threading.Lock()


class FileSecretKey:
    """Stands in for ``settings.SECRET_KEY``: the key in ``path``, made there when it is first needed.

    Django and django-q2 turn the key into bytes with ``str()`` (``force_bytes``), so the file is read
    (or written) when something first signs, not when the settings are imported.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._value: str | None = None

    def __str__(self) -> str:
        if self._value is None:
            with _making:
                if self._value is None:
                    if not self.path.exists():
                        self.path.parent.mkdir(parents=True, exist_ok=True)
                        self.path.write_text(secrets.token_urlsafe(50))
                    self._value = self.path.read_text().strip()
        return self._value

    def __bool__(self) -> bool:
        return True  # set: Django's "SECRET_KEY must not be empty" check must not read the file

    def __len__(self) -> int:
        return len(str(self))

    def __iter__(self):
        return iter(str(self))

    def __getattr__(self, name: str):
        if name.startswith("_"):  # copy and pickle probe these before __init__ has run
            raise AttributeError(name)
        return getattr(str(self), name)  # the str methods callers use (startswith, encode, ...)

    def __eq__(self, other: object) -> bool:
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __repr__(self) -> str:
        return f"FileSecretKey({str(self.path)!r})"  # never the key itself
