-- The replica's GIN indexes without fastupdate. With it (PostgreSQL's default), each actor written goes to a
-- pending list that every search of the index reads whole, until a vacuum or 4 MB of it merges the list; on a
-- million-actor replica autovacuum waits for 200,000 dead rows, so the list stays, and after 400 actor updates
-- (bench/matching.py: some 7,800 pending entries per index) one grid-cell probe of the short list took 48 ms in
-- its index scan instead of a few. Matching reads these indexes for every need and the replica is written one
-- actor at a time, so each write now updates the index itself. The pending entries already there are merged here.
DO $$
DECLARE
    gin regclass;
BEGIN
    FOR gin IN
        SELECT i.indexrelid::regclass
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_am am ON am.oid = c.relam
        WHERE am.amname = 'gin' AND i.indrelid IN ('actors'::regclass, 'needs'::regclass)
    LOOP
        EXECUTE format('ALTER INDEX %s SET (fastupdate = off)', gin);
        PERFORM gin_clean_pending_list(gin);
    END LOOP;
END
$$;
