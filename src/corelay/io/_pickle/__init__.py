"""The pickle format: a file of appended records, each one pickle of ``{'data': tree, 'key': key}``.

This is the format of corelay 1.0.0's ``PickleStorage``, so files go both ways: a record is a
plain :func:`pickle.dump` of the dict, and the last record of a key holds its value.

Reading without two copies, and without unpickling what is not asked for: opening a file walks
the pickle opcodes of every record (:func:`scan`) instead of unpickling them. The walk reads the
small arguments (strings, integers, memo indices) and seeks over byte payloads, so it touches
only the metadata of the file however large its arrays are, and it simulates just enough of the
pickle machine (strings, dicts, the memo) to find each record's key. The result is an index
``key -> byte offset of the key's last record``; reading a key seeks there and unpickles that one
record, straight from the file. Unpickling every record on open would be simpler, but would read
every array of the file to learn its keys.

Loading never executes code: :class:`TreeUnpickler` resolves only the globals that stored trees
need (NumPy array, dtype and scalar reconstruction, ``complex``, ``OrderedDict``, and ``set``
for corelay 1.0.0 files), from a fixed table, without importing anything; any other global is
refused with :class:`RefusedGlobalError`, naming it, and an object array with
:class:`RefusedValueError`.

Loading takes work and memory in proportion to the record, however it was crafted. Before the
unpickler reads a record, its opcodes are walked again (metadata only): memo indexes beyond the
opcodes walked, and frames or lengths beyond the end of the file, are refused, so the
unpickler's memo and reads stay within the file's size. The loaded value is then turned into
the returned tree by :func:`read_form`, without recursion (any depth reads back): a container
that contains itself is refused, and a container the record holds more than once is copied,
within a budget of nodes proportional to the record's opcodes; a record beyond it (a chain of
reused containers, which doubles the tree at every link) is refused as shared structure.

Writing uses pickle protocol 5, in band: a contiguous array is written straight from its memory
(no copy) and read back into one buffer that becomes the array (no copy). Each record is
appended and flushed to the operating system; ``os.fsync`` is not called, as HDF5Storage does
not call it either: a returned write survives the process being killed, not a power failure.
A write that fails part way is cut off the file again. A record cut short by a crash (a torn
last record) is ignored with a warning, and cut off the file when it is opened for appending.

Deleting a key appends a tombstone, ``{'data': None, 'key': key, 'deleted': True}``, written
and flushed like any record: the key is absent from the records after it until a later record
writes it again. corelay 1.0.0 ignores the extra field, so it reads a deleted key as ``None``.

The modules: :mod:`.safe` (what a record may hold and the restricted unpickler), :mod:`.form`
(the loaded value as the returned tree), :mod:`.scan` (indexing by walking opcodes),
:mod:`.records` (the file of records), :mod:`.describe` (what ``inspect`` and ``validate``
show) and :mod:`.storage` (:class:`~corelay.io.storage.PickleStorage`).
"""

from corelay.io._pickle.form import read_form
from corelay.io._pickle.records import RecordFile
from corelay.io._pickle.safe import (
    ALLOWED_GLOBALS,
    PROTOCOL,
    CorruptRecordError,
    RefusedGlobalError,
    RefusedValueError,
    TreePickler,
    TreeUnpickler,
)
from corelay.io._pickle.scan import DELETED_FIELD, scan

__all__ = [
    "ALLOWED_GLOBALS",
    "DELETED_FIELD",
    "PROTOCOL",
    "CorruptRecordError",
    "RecordFile",
    "RefusedGlobalError",
    "RefusedValueError",
    "TreePickler",
    "TreeUnpickler",
    "read_form",
    "scan",
]
