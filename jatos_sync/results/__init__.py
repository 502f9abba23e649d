"""The results mirror: a study's participant results in a local folder, laid out as JATOS
exports them (docs/jatos-api.md §14).

Owns one mapping's `results:` folder and everything in it: `study_result_<srid>/
comp-result_<crid>/data.txt` and `files/<name>`, `metadata.json` (the server's metadata of
the study as last fetched), `results.csv` (one row per component result) and the record of
what was mirrored (`.jatos-sync-results.json`, next to the data it describes). A pass asks
for the study's metadata (one request), decides what to fetch (`plan_pass`, pure: tested
with `==`), fetches those study results as zips streamed to a temporary file in the folder
(never held in memory), verifies every zip against the metadata (entries present, CRCs,
plausible sizes; docs/jatos-api.md §15.2 items 12-16), writes each verified result
atomically (temporary file in the target folder, fsync, rename; folders 0700, files 0600),
removes the data of withdrawn runs (an abort purges them on the server,
docs/jatos-api.md §14.7) and keeps results deleted on the server.

Everything from the server is untrusted (docs/safety.md, rule 10): IDs must be positive
whole numbers, file names pass `paths.server_path` and every local path is proven inside
the folder with `paths.contained`; zip entries are looked up by the names the metadata
implies, never extracted by their own names. The record is a hint: a damaged one is rebuilt
(everything on the server is fetched again), never trusted, never fatal.

The modules, in the order data flows through them: `metadata` (the server's metadata,
decoded and checked), `plan` (pure: metadata + record → what a pass does), `zips` (one
study result out of a zip, verified before it is written), `record` (the record and
results.csv, as text and read back) and `mirror` (the pass that does the I/O, and the `results`
command's passes).

Must not: send HTTP except through `JatosClient`, write or delete outside the results
folder, delete anything but the data and files of withdrawn runs, or log result data.
"""

from jatos_sync.results.metadata import (
    ComponentResultMeta,
    DataSize,
    Metadata,
    ResultFile,
    StudyResultMeta,
    parse_metadata,
)
from jatos_sync.results.mirror import (
    TRIES,
    ResultsBusyError,
    ResultsMirror,
    ResultsOutcome,
    ResultsStopped,
    folder_lock,
    run_results,
)
from jatos_sync.results.plan import Mirrored, Plan, Record, Row, batches, plan_pass, rows_for
from jatos_sync.results.record import (
    CSV_COLUMNS,
    RECORD_NAME,
    csv_text,
    encode_record,
    iso_time,
    load_record,
    parse_record,
)

__all__ = [
    "CSV_COLUMNS",
    "RECORD_NAME",
    "TRIES",
    "ComponentResultMeta",
    "DataSize",
    "Metadata",
    "Mirrored",
    "Plan",
    "Record",
    "ResultFile",
    "ResultsBusyError",
    "ResultsMirror",
    "ResultsOutcome",
    "ResultsStopped",
    "Row",
    "StudyResultMeta",
    "batches",
    "csv_text",
    "encode_record",
    "folder_lock",
    "iso_time",
    "load_record",
    "parse_metadata",
    "parse_record",
    "plan_pass",
    "rows_for",
    "run_results",
]
