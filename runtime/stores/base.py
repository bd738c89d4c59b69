"""The store interface: byte values under keys in namespaces, with a consuming move."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable


@runtime_checkable
class Store(Protocol):
    """One named data store of a campaign.

    Built as ``cls(settings, root=workspace)`` where ``settings`` is the store's ``StorePlan``
    (``backend`` plus that backend's keys). A namespace is a directory, an
    archive or a key prefix; keys are plain names. Every method raises ``StoreError`` with the
    namespace and key on failure, and refuses names that could escape the workspace.
    """

    key: ClassVar[str]

    def put(self, namespace: str, key: str, data: bytes) -> None:
        """Write one item (last write wins)."""
        ...

    def put_many(self, namespace: str, items: Mapping[str, bytes]) -> None:
        """Write many items in one round trip where the backend allows it."""
        ...

    def get(self, namespace: str, key: str) -> bytes:
        """Read one item; ``StoreError`` if it does not exist."""
        ...

    def get_many(self, namespace: str, keys: Sequence[str]) -> list[bytes]:
        """Read many items, in the order asked."""
        ...

    def exists(self, namespace: str, key: str) -> bool:
        """Whether ``key`` is live in ``namespace``."""
        ...

    def keys(self, namespace: str, pattern: str = "*") -> list[str]:
        """Live keys matching a glob ``pattern``, sorted."""
        ...

    def move(self, namespace: str, keys: Sequence[str], dest: str) -> None:
        """Move items out of ``namespace`` into ``dest`` (how consumed items leave the live set)."""
        ...

    def close(self) -> None:
        """Release connections and file handles."""
        ...


StoreConfig = Mapping[str, Any]


@runtime_checkable
class Journaled(Protocol):
    """A store that can say which keys were written since a point, without listing them all.

    An ingest pass then costs what is new, not every candidate ever written (millions of
    frames in the SC'21 campaign). The cursor is opaque and lives in the caller's memory.
    """

    def keys_after(self, namespace: str, pattern: str = "*", cursor: Any = None
                   ) -> tuple[list[str], Any]:
        """Keys matching ``pattern`` written to ``namespace`` since ``cursor``, in write
        order, each once, and the cursor to pass next time. ``cursor=None`` lists every key
        from the beginning. A key listed may have left the namespace since it was written."""
        ...


@runtime_checkable
class Restartable(Protocol):
    """A store on a server that can restart and come back without what it held (Redis
    without persistence: the server's choice). Readers compare ``epoch`` between passes to
    know, list again from scratch, and report what they knew of that is gone."""

    def epoch(self) -> str:
        """The server's current run (Redis: INFO's ``run_id``); another one after a restart."""
        ...
