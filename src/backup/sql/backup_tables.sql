-- Every ordinary table outside the system schemas, with the COPY statement
-- that checksums it: all columns, rows in primary-key order (whole-row order
-- for a table without one). Identifiers are quoted by the server (format
-- %I), never by the client.
select n.nspname as schema_name,
       c.relname as table_name,
       format('copy (select * from %I.%I t order by %s) to stdout',
              n.nspname, c.relname,
              coalesce((select string_agg(format('t.%I', a.attname), ', ' order by k.ord)
                          from pg_index i
                          cross join lateral unnest(i.indkey::int2[]) with ordinality as k(attnum, ord)
                          join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                         where i.indrelid = c.oid and i.indisprimary), 't')) as copy_sql
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where c.relkind = 'r'
  and n.nspname not in ('pg_catalog', 'information_schema')
  and n.nspname not like 'pg\_toast%'
  and n.nspname not like 'pg\_temp%'
order by n.nspname, c.relname
