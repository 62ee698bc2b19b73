-- Every change of a credential (revoked, deleted) is told to the gateways listening on `maillage_credentials`,
-- so that each replica drops what it keeps of it; PostgreSQL sends the notification when the change commits.
CREATE FUNCTION credentials_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('maillage_credentials', OLD.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER credentials_changed AFTER UPDATE OR DELETE ON credentials
    FOR EACH ROW EXECUTE FUNCTION credentials_changed();
