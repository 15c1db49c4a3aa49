"""The embedded SQLite store: every SQL statement of galprof lives in this package.

`db.py` holds the connection, migrations, transactions and the writer lock; each other
module owns the statements of one table group (media, results, people, privacy, passes).
"""

from galprof.store.db import Store, open_store  # noqa: F401
