-- Indexes that keep cdrsync's queries cheap on a `cdr` / `cel` of tens of millions of rows.
--
-- cdrsync itself NEVER writes to the PBX database (its login may only SELECT). Adding an index is a
-- ONE-OFF action by the database administrator, on a table that Asterisk writes to all day:
--   * InnoDB (FreePBX >= 13): the index is built online (ALGORITHM=INPLACE, LOCK=NONE): Asterisk
--     keeps inserting rows meanwhile; the build reads the whole table once (minutes on tens of
--     millions of rows, extra disk I/O, and a short metadata lock at start and end: it waits for
--     long-running queries on the table, e.g. a CDR report, to finish).
--   * MyISAM (old installs; `SHOW TABLE STATUS LIKE 'cdr'` shows the engine): no online build.
--     Remove the `ALGORITHM=INPLACE, LOCK=NONE` clauses (they fail on MyISAM); the table is then
--     locked for writes while the index is built, so do it in a quiet hour.
--   * Have a backup and enough free disk for the index (roughly 40 bytes x rows per index).
--
-- Run it as an administrator, in the CDR database:
--   mysql -u root asteriskcdrdb < sql/indexes.sql
--
-- Idempotent on MariaDB (>= 10.0): `ADD INDEX IF NOT EXISTS` skips an index of that NAME with a
-- note. That syntax is MariaDB-only: on MySQL delete the words `IF NOT EXISTS`; a re-run then
-- stops with "Duplicate key name", which is harmless. IF NOT EXISTS goes by name, not by column:
-- if `SHOW INDEX FROM cdr` / `SHOW INDEX FROM cel` already lists an index whose FIRST column is
-- the one below under another name, skip that line. `cdrsync check` reports which are missing.
--
-- What cdrsync reads, and which index serves it:
--   new end-of-call events:  cel WHERE id > :cursor AND eventtype = 'LINKEDID_END' ORDER BY id
--                            -> the PRIMARY KEY (a range of new ids only). No index on eventtype
--                               or eventtime is needed (backfill finds the first id of a date by
--                               binary search on the primary key).
--   a call's events:         cel WHERE linkedid IN (...)  and  cel WHERE uniqueid IN (...)
--   a call's rows:           cdr WHERE linkedid IN (...)  and  cdr WHERE uniqueid IN (...)
--   CDR-only mode, backfill: cdr WHERE calldate >= :since (AND calldate < :until)

-- cdr.linkedid: fetching the rows of a finished call. Stock FreePBX adds the column but NO index:
-- without it each call costs a full scan of `cdr` (the single most important line here).
ALTER TABLE cdr ADD INDEX IF NOT EXISTS linkedid (linkedid), ALGORITHM=INPLACE, LOCK=NONE;

-- cdr.uniqueid: rows of a channel whose linkedid differs (transfers, pickups). Stock FreePBX has
-- it (as `uniqueid`); very old installs may not.
ALTER TABLE cdr ADD INDEX IF NOT EXISTS uniqueid (uniqueid), ALGORITHM=INPLACE, LOCK=NONE;

-- cdr.calldate: the look-back window of CDR-only mode, backfill by date, `cdrsync check`'s sample
-- of recent rows. Stock FreePBX has it (as `calldate`).
ALTER TABLE cdr ADD INDEX IF NOT EXISTS calldate (calldate), ALGORITHM=INPLACE, LOCK=NONE;

-- cel.linkedid and cel.uniqueid: all events of a call and the channels that join two linkedids.
-- The FreePBX cel module creates both (these names); installs with a hand-made `cel` may lack them.
ALTER TABLE cel ADD INDEX IF NOT EXISTS linkedid_index (linkedid), ALGORITHM=INPLACE, LOCK=NONE;
ALTER TABLE cel ADD INDEX IF NOT EXISTS uniqueid_index (uniqueid), ALGORITHM=INPLACE, LOCK=NONE;

-- To undo the one index FreePBX does not create itself:  ALTER TABLE cdr DROP INDEX linkedid;
