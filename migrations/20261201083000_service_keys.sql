-- secrets the service derives opaque tokens from (today: the key that signs
-- page tokens), shared by every replica on this database so a token issued
-- by one is accepted by all. created by the first process that needs one.
create table service_keys (
    purpose    text primary key,
    key        bytea not null check (length(key) >= 32),
    created_at timestamptz not null default now()
);
