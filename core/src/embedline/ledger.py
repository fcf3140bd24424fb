"""Run-wide id bookkeeping: what one run read, per collection, and what is stale afterwards.

The reader stage admits every item through :meth:`RunLedger.admit` (an id already produced in this
run is identical content: one row), records the uris it read, and the uris that failed.  After a
complete run, :meth:`RunLedger.stale` says which stored rows to delete: rows of a uri read this run
whose id the run did not produce (an older version of the file), and with ``prune`` rows whose
source is gone.  The ledger lives on the process that reads (the driver, for a distributed
executor); the stages that prepare, embed and write never touch it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from embedline.sources import SeenUris


class RunLedger:
    def __init__(self, collections: int):
        self._produced: list[set[str]] = [set() for _ in range(collections)]
        self._seen: list[SeenUris] = [SeenUris() for _ in range(collections)]
        self.failed_uris: set[str] = set()

    def saw(self, target: int, uri: str, origin: str | None = None, line: int | None = None) -> None:
        """``uri`` (a file, or row ``line`` of ``origin``) was read for collection ``target``."""
        self._seen[target].add(uri, origin, line)

    def admit(self, target: int, item_id: str) -> bool:
        """True the first time ``item_id`` comes up for ``target`` in this run."""
        produced = self._produced[target]
        if item_id in produced:
            return False
        produced.add(item_id)
        return True

    def failed(self, uri: str) -> None:
        self.failed_uris.add(uri)

    def stale(self, target: int, rows: Iterable[tuple[str, str]], prune: bool) -> Iterator[str]:
        """Ids among the stored ``(id, uri)`` rows of ``target`` that a complete run leaves stale."""
        produced, seen = self._produced[target], self._seen[target]
        for row_id, uri in rows:
            if row_id not in produced and (uri in seen or (prune and uri not in self.failed_uris)):
                yield row_id
