"""Know the PBX: who is a phone, a trunk, a ring group, a queue... learned from its own rows.

The step between grouping and interpretation. `learn` turns rows into a `PbxModel` (pure);
interpretation asks the model instead of guessing from the shape of a name; `[pbx]` settings
override it. `cdrsync.pbx.store` keeps the model in cdrsync's state store, `cdrsync.pbx.report`
words it for `cdrsync pbx` and `cdrsync check`.
"""

from cdrsync.pbx.learn import learn
from cdrsync.pbx.model import Known, PbxModel

__all__ = ["Known", "PbxModel", "learn"]
