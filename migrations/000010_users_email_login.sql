-- Login without a communityId looks an email up across communities (auth.service.ts); without this
-- index that is a scan of every user. Deliberately not led by community_id: the lookup is the one
-- place that has no community yet.
CREATE INDEX users_email_live ON users (email) WHERE deleted_at IS NULL;
