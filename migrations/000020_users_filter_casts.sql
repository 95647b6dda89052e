-- Safe casts for Get Users with Filters on users.custom_fields (jsonb). A value stored before its
-- field changed type (e.g. text -> number) must simply not match; it must never fail the query.
-- PostgreSQL 15 has no pg_input_is_valid, hence the exception blocks; callers only reach them for
-- string values, so proper JSON numbers never pay for a subtransaction.

CREATE FUNCTION hearth_try_numeric(v text) RETURNS numeric
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
  RETURN v::numeric;
EXCEPTION WHEN others THEN
  RETURN NULL;
END
$$;

-- Date-only values ('2025-01-31', the stored form of date fields) are read as midnight UTC,
-- whatever the session time zone.
CREATE FUNCTION hearth_try_timestamptz(v text) RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
  IF v ~ '^\d{4}-\d{2}-\d{2}$' THEN
    RETURN (v || 'T00:00:00Z')::timestamptz;
  END IF;
  RETURN v::timestamptz;
EXCEPTION WHEN others THEN
  RETURN NULL;
END
$$;
