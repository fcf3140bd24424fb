"""Option declarations and checks for the ``[store]`` section.

Pure Python on purpose: ``embedline plugins`` / ``embedline check`` read these without pymilvus.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from embedline.contracts import Option

DEFAULT_URI = "embed.db"

#: Index types Milvus knows for a float vector field (server or Zilliz Cloud).
INDEX_TYPES = (
    "AUTOINDEX",
    "FLAT",
    "IVF_FLAT",
    "IVF_SQ8",
    "IVF_PQ",
    "IVF_RABITQ",
    "HNSW",
    "HNSW_SQ",
    "HNSW_PQ",
    "HNSW_PRQ",
    "DISKANN",
    "SCANN",
    "GPU_CAGRA",
    "GPU_IVF_FLAT",
    "GPU_IVF_PQ",
    "GPU_BRUTE_FORCE",
)

#: What Milvus Lite 3.x can actually load.  Lite accepts any index name at create time and even
#: searches with it in the creating process, but the next process fails to load the collection
#: ("unknown index_type" / "reserved for a future phase"), so anything else is refused up front.
LITE_INDEX_TYPES = ("AUTOINDEX", "FLAT", "IVF_FLAT", "IVF_SQ8", "HNSW", "HNSW_SQ")

METRICS = ("COSINE", "IP", "L2")

LITE_ENGINES = ("process", "inline")

#: Milvus' own ceiling for a VARCHAR column.
VARCHAR_LIMIT = 65535

# pymilvus speaks gRPC over these; grpc:// is accepted too and rewritten to http://.
_REMOTE_PREFIXES = ("http://", "https://", "tcp://", "unix:", "grpc://")

OPTIONS: dict[str, Option] = {
    "uri": Option(
        str,
        DEFAULT_URI,
        "Milvus Lite database folder ending in .db (relative to the pipeline file), "
        "or http://host:19530 for a server, or https://...zillizcloud.com",
    ),
    "token": Option(
        str, None, 'server or Zilliz Cloud token, e.g. token = "${MILVUS_TOKEN}" (never printed)', secret=True
    ),
    "db_name": Option(str, None, "Milvus database (server only; default: the server's default database)"),
    "index": Option(
        str,
        "AUTOINDEX",
        "vector index type (Milvus Lite builds " + ", ".join(LITE_INDEX_TYPES) + ")",
        choices=INDEX_TYPES,
    ),
    "metric": Option(str, "COSINE", "similarity metric of the index", choices=METRICS),
    "index_params": Option(dict, {}, "index build parameters, e.g. {M = 16, efConstruction = 200} or {nlist = 128}"),
    "search_params": Option(dict, {}, "search parameters, e.g. {ef = 64} or {nprobe = 16}"),
    "lite_engine": Option(
        str,
        "process",
        "where Milvus Lite's engine runs: `process` (one process per database, shared by every user of the "
        "file, so a search works while a run writes; it stops when its last user is gone) or `inline` (inside "
        "this process, which then holds the file alone)",
        choices=LITE_ENGINES,
    ),
    "write_batch_size": Option(int, 256, "rows per upsert call"),
    "write_concurrency": Option(
        int,
        2,
        "upsert calls of one write in flight at once, so that the next batch is packed while the database "
        "stores the last (1: one after the other; an in-process Milvus Lite, `lite_engine = \"inline\"`, uses 1)",
    ),
    "text_max_length": Option(
        int, 8192, "bytes of text stored per row; longer text is cut at a UTF-8 character boundary"
    ),
}


def is_lite(uri: str) -> bool:
    """True when ``uri`` names a local Milvus Lite database rather than a server."""
    return not uri.lower().startswith(_REMOTE_PREFIXES)


# Milvus servers accept only these names; Milvus Lite accepts more, which would break on a server later.
COLLECTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")


def validate(options: Mapping[str, Any]) -> None:
    """Cross-field checks; raises ``ValueError("key: message")`` so the core can name the key."""
    get = lambda name: options.get(name, OPTIONS[name].default)  # noqa: E731
    uri = get("uri") or DEFAULT_URI
    index = get("index")
    if index not in INDEX_TYPES:
        raise ValueError(f"index: unknown index type {index!r}; expected one of {', '.join(INDEX_TYPES)}")
    if is_lite(uri):
        if not uri.endswith(".db"):
            raise ValueError(
                f"uri: a Milvus Lite database path must end in '.db' (got {uri!r}); "
                "for a server use http://host:19530"
            )
        if index not in LITE_INDEX_TYPES:
            raise ValueError(
                f"index: Milvus Lite cannot build {index} (it is accepted at create time but the collection "
                f"then fails to load); use one of {', '.join(LITE_INDEX_TYPES)}, or a Milvus server for {index}"
            )
    collection = options.get("collection")
    if collection is not None and not COLLECTION_NAME.fullmatch(collection):
        raise ValueError(
            f"collection: {collection!r} is not a valid Milvus collection name; use letters, digits and "
            "underscores, starting with a letter or underscore"
        )
    if get("metric") not in METRICS:
        raise ValueError(f"metric: expected one of {', '.join(METRICS)}, got {get('metric')!r}")
    if get("write_batch_size") < 1:
        raise ValueError(f"write_batch_size: expected a positive number of rows, got {get('write_batch_size')}")
    if get("write_concurrency") < 1:
        raise ValueError(f"write_concurrency: expected a positive number of calls, got {get('write_concurrency')}")
    if not 1 <= get("text_max_length") <= VARCHAR_LIMIT:
        got = get("text_max_length")
        raise ValueError(f"text_max_length: expected 1 to {VARCHAR_LIMIT} bytes (Milvus' VARCHAR limit), got {got}")
