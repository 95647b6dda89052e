-- A username names one user of a community, in any case. Create User always refused a taken one,
-- but bulk jobs and sign-up did not check, and lookups compare lower(username), which the plain
-- (community_id, username) index could not serve.
-- Where a community already holds a name several times, the oldest account (lowest seq) keeps it
-- and the others lose it (no one could sign in with it anyway: it was ambiguous). Each loss is
-- written to the field history (source 'migration', changed_by '000160') so an admin can see it
-- and give those users new names.
WITH ranked AS (
  SELECT id, community_id, username,
    row_number() OVER (PARTITION BY community_id, lower(username) ORDER BY seq) AS n
  FROM users WHERE username IS NOT NULL
), cleared AS (
  UPDATE users u SET username = NULL, updated_at = now()
  FROM ranked r WHERE u.id = r.id AND r.n > 1
  RETURNING u.id, u.community_id, r.username
)
INSERT INTO field_histories (id, community_id, user_id, field_id, field, old_value, new_value, source, changed_by)
SELECT hearth_object_id(), community_id, id, NULL, 'username', to_jsonb(username), NULL, 'migration', '000160'
FROM cleared;

DROP INDEX IF EXISTS users_community_username;
CREATE UNIQUE INDEX users_community_username ON users (community_id, lower(username));
