-- A username names one user of a community, in any case. Create User always refused a taken one,
-- but bulk jobs and sign-up did not check, and lookups compare lower(username), which the plain
-- (community_id, username) index could not serve.
--
-- Where a community already holds a name several times (compared as lower(username) compares),
-- one account keeps it: a live account before a deleted one, then the oldest (lowest seq). The
-- others lose it (their username becomes NULL; no one could sign in with it anyway: it was
-- ambiguous). Each loss is written to the field history (field 'username', source 'migration',
-- changed_by '000160') so an admin can see it and give those users new names.
--
-- Locking: this runs in one transaction. SHARE ROW EXCLUSIVE keeps other writers out of users from
-- the dedupe to the commit, so no one can add a duplicate before the unique index exists, while
-- readers go on (it does not conflict with SELECT, nor with SELECT ... FOR UPDATE/SHARE). The new
-- index is built under a temporary name; only the DROP INDEX of the old one takes ACCESS EXCLUSIVE,
-- held from there to the commit, which follows at once (a drop and a rename), not the build.
-- The index keeps the name users_community_username: bulk jobs map a unique violation by it.
LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE;

WITH ranked AS (
  SELECT id, community_id, username,
    row_number() OVER (
      PARTITION BY community_id, lower(username)
      ORDER BY deleted_at IS NOT NULL, seq
    ) AS n
  FROM users WHERE username IS NOT NULL
), cleared AS (
  UPDATE users u SET username = NULL, updated_at = now()
  FROM ranked r WHERE u.id = r.id AND r.n > 1
  RETURNING u.id, u.community_id, r.username
)
INSERT INTO field_histories (id, community_id, user_id, field_id, field, old_value, new_value, source, changed_by)
SELECT hearth_object_id(), community_id, id, NULL, 'username', to_jsonb(username), NULL, 'migration', '000160'
FROM cleared;

CREATE UNIQUE INDEX users_community_username_new ON users (community_id, lower(username));
DROP INDEX IF EXISTS users_community_username;
ALTER INDEX users_community_username_new RENAME TO users_community_username;
