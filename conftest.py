"""For every test in the repository: embedline's caches (weights hashes, exports) go to a
temporary folder of this session, never to the user's ~/.cache."""

import os
import tempfile

_CACHE = tempfile.TemporaryDirectory(prefix="embedline-test-cache-")
os.environ.setdefault("EMBEDLINE_CACHE", _CACHE.name)
