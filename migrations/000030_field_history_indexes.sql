-- Field histories are listed per field by its id (so a key reused after a delete never mixes two
-- fields) and per user, newest first.
CREATE INDEX field_histories_field_id ON field_histories (community_id, field_id, created_at);
CREATE INDEX field_histories_user_created ON field_histories (community_id, user_id, created_at);
