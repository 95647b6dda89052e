-- Ids made in SQL for rows inserted by the million (field histories of bulk jobs). Random ids
-- scatter inserts across the primary-key index; these keep the ObjectId shape (24 hex: 8 of epoch
-- seconds, 16 of a sequence) and arrive in order, so inserts append to the index's right edge.
CREATE SEQUENCE hearth_object_id_seq;
CREATE FUNCTION hearth_object_id() RETURNS text LANGUAGE sql VOLATILE AS $$
  SELECT lpad(to_hex(extract(epoch FROM clock_timestamp())::bigint), 8, '0')
    || lpad(to_hex(nextval('hearth_object_id_seq')), 16, '0')
$$;
