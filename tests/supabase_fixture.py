"""A Supabase-shaped PostgreSQL: the platform's roles and managed schemas, a `postgres` role that
is not a superuser, and a small app built by `postgres` on top, as a project has them.

Written from the facts of the platform's published SQL (supabase/postgres
migrations/db/init-scripts and migrations/db/migrations, the auth and storage services'
migrations; see /work/shared/research/supabase.md §6), not copied from it: the bootstrap
superuser is `supabase_admin`; `postgres` is NOSUPERUSER CREATEDB CREATEROLE REPLICATION
BYPASSRLS, member of anon/authenticated/service_role and pg_read_all_data; `auth` and `storage`
belong to the auth and storage services' admin roles. Two privilege generations:

- "2024": `postgres` is a member of supabase_auth_admin and supabase_storage_admin, and may
  set session_replication_role (supautils lets it; here a GRANT SET ON PARAMETER);
- "2025": after the platform's `revoke_admin_roles_from_postgres` changes: no membership, no
  CREATE on auth/storage, no rights on the bookkeeping tables, and (here) no
  session_replication_role.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from bika.postgres.cluster import Cluster, start_cluster

ADMIN = "supabase_admin"
PASSWORD = "s3cret-pw"
GENERATIONS = ("2024", "2025")


def start_platform(bin_dir: Any, generation: str) -> Cluster:
    """A cluster whose bootstrap superuser is supabase_admin, with the platform's roles."""
    cluster = start_cluster(bin_dir, password=PASSWORD, superuser=ADMIN)
    cluster.execute(_roles_sql(generation))
    return cluster


def _roles_sql(generation: str) -> str:
    text = f"""
    CREATE ROLE postgres LOGIN NOSUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS
        PASSWORD '{PASSWORD}';
    CREATE ROLE anon NOLOGIN NOINHERIT;
    CREATE ROLE authenticated NOLOGIN NOINHERIT;
    CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
    CREATE ROLE authenticator LOGIN NOINHERIT;
    GRANT anon, authenticated, service_role TO authenticator;
    CREATE ROLE supabase_auth_admin LOGIN NOINHERIT CREATEROLE;
    CREATE ROLE supabase_storage_admin LOGIN NOINHERIT CREATEROLE;
    CREATE ROLE supabase_replication_admin LOGIN REPLICATION;
    CREATE ROLE dashboard_user NOSUPERUSER CREATEDB CREATEROLE REPLICATION;
    CREATE ROLE pgbouncer LOGIN;
    GRANT anon, authenticated, service_role TO postgres;
    GRANT pg_read_all_data, pg_monitor, pg_signal_backend TO postgres;
    """
    if generation == "2024":
        text += """
        GRANT supabase_auth_admin, supabase_storage_admin TO postgres;
        GRANT SET ON PARAMETER session_replication_role TO postgres;
        """
    return text


def _platform_sql(dbname: str, generation: str) -> str:
    """The managed schemas of a fresh project, run as supabase_admin in its database."""
    text = f"""
    GRANT ALL ON DATABASE "{dbname}" TO postgres, dashboard_user;
    GRANT ALL ON SCHEMA public TO postgres;
    GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
    ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public
        GRANT ALL ON TABLES TO anon, authenticated, service_role;
    ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public
        GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
    ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public
        GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;

    CREATE SCHEMA extensions;
    GRANT USAGE ON SCHEMA extensions TO postgres, anon, authenticated, service_role;
    CREATE FUNCTION extensions.grant_pg_cron_access() RETURNS event_trigger
        LANGUAGE plpgsql AS $$ BEGIN RETURN; END $$;
    CREATE FUNCTION extensions.pgrst_drop_watch() RETURNS event_trigger
        LANGUAGE plpgsql AS $$ BEGIN RETURN; END $$;
    CREATE EVENT TRIGGER issue_pg_cron_access ON ddl_command_end
        WHEN TAG IN ('CREATE EXTENSION') EXECUTE FUNCTION extensions.grant_pg_cron_access();
    CREATE EVENT TRIGGER pgrst_drop_watch ON sql_drop
        EXECUTE FUNCTION extensions.pgrst_drop_watch();

    CREATE SCHEMA realtime;
    CREATE TABLE realtime.schema_migrations (version bigint PRIMARY KEY, inserted_at timestamp);
    INSERT INTO realtime.schema_migrations VALUES (20211116024918, '2024-01-01');

    CREATE SCHEMA auth AUTHORIZATION supabase_admin;
    GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role, postgres, dashboard_user;
    GRANT ALL ON SCHEMA auth TO supabase_auth_admin;
    SET ROLE supabase_auth_admin;
    CREATE TABLE auth.users (
        instance_id uuid, id uuid PRIMARY KEY, aud varchar(255), role varchar(255),
        email varchar(255) UNIQUE, encrypted_password varchar(255),
        email_confirmed_at timestamptz, raw_app_meta_data jsonb, raw_user_meta_data jsonb,
        created_at timestamptz, updated_at timestamptz);
    CREATE TABLE auth.identities (
        provider_id text NOT NULL,
        user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
        identity_data jsonb NOT NULL, provider text NOT NULL,
        last_sign_in_at timestamptz, created_at timestamptz, updated_at timestamptz,
        email text GENERATED ALWAYS AS (lower(identity_data ->> 'email')) STORED,
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(), UNIQUE (provider_id, provider));
    CREATE TABLE auth.sessions (
        id uuid PRIMARY KEY, user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
        created_at timestamptz, updated_at timestamptz);
    CREATE TABLE auth.refresh_tokens (
        instance_id uuid, id bigserial PRIMARY KEY, token varchar(255) UNIQUE,
        user_id varchar(255), revoked boolean, created_at timestamptz, updated_at timestamptz,
        parent varchar(255),
        session_id uuid REFERENCES auth.sessions (id) ON DELETE CASCADE);
    CREATE TABLE auth.schema_migrations (version varchar(255) PRIMARY KEY);
    INSERT INTO auth.schema_migrations VALUES ('20171026211738'), ('20221208132122');
    CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
        SELECT coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                        (nullif(current_setting('request.jwt.claims', true), '')::jsonb
                         ->> 'sub'))::uuid $$;
    CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $$
        SELECT nullif(current_setting('request.jwt.claim.role', true), '')::text $$;
    GRANT ALL ON ALL TABLES IN SCHEMA auth TO postgres, dashboard_user;
    GRANT ALL ON ALL SEQUENCES IN SCHEMA auth TO postgres, dashboard_user;
    GRANT EXECUTE ON FUNCTION auth.uid(), auth.role() TO anon, authenticated, service_role;
    RESET ROLE;

    CREATE SCHEMA storage AUTHORIZATION supabase_admin;
    GRANT USAGE ON SCHEMA storage TO anon, authenticated, service_role, postgres;
    GRANT ALL ON SCHEMA storage TO supabase_storage_admin;
    SET ROLE supabase_storage_admin;
    CREATE TABLE storage.buckets (
        id text PRIMARY KEY, name text NOT NULL, owner uuid, public boolean DEFAULT false,
        created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
    CREATE UNIQUE INDEX bname ON storage.buckets (name);
    CREATE TABLE storage.objects (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        bucket_id text REFERENCES storage.buckets (id), name text, owner uuid,
        created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now(),
        last_accessed_at timestamptz DEFAULT now(), metadata jsonb,
        path_tokens text[] GENERATED ALWAYS AS (string_to_array(name, '/')) STORED);
    CREATE UNIQUE INDEX bucketid_objname ON storage.objects (bucket_id, name);
    ALTER TABLE storage.objects ENABLE ROW LEVEL SECURITY;
    CREATE TABLE storage.migrations (
        id integer PRIMARY KEY, name varchar(100) UNIQUE NOT NULL, hash varchar(40) NOT NULL,
        executed_at timestamp DEFAULT current_timestamp);
    INSERT INTO storage.migrations VALUES (0, 'create-migrations-table', 'e18db593', now());
    CREATE FUNCTION storage.foldername(name text) RETURNS text[] LANGUAGE plpgsql AS $$
        DECLARE _parts text[]; BEGIN
        SELECT string_to_array(name, '/') INTO _parts;
        RETURN _parts[1:array_length(_parts, 1) - 1]; END $$;
    CREATE FUNCTION storage.update_updated_at_column() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN NEW.updated_at = now(); RETURN NEW; END $$;
    CREATE TRIGGER update_objects_updated_at BEFORE UPDATE ON storage.objects
        FOR EACH ROW EXECUTE FUNCTION storage.update_updated_at_column();
    GRANT ALL ON storage.buckets, storage.objects TO anon, authenticated, service_role,
        postgres;
    GRANT ALL ON storage.migrations TO postgres;
    RESET ROLE;
    """
    if generation == "2025":
        text += """
        REVOKE ALL ON auth.schema_migrations FROM postgres;
        REVOKE ALL ON storage.migrations FROM postgres;
        REVOKE CREATE ON SCHEMA auth, storage FROM postgres;
        """
    return text


# The user's app, built as `postgres` like in the dashboard's SQL editor.
APP_ROLES_SQL = """
CREATE ROLE app_reporter NOLOGIN;
CREATE ROLE app_batch LOGIN PASSWORD 'batch-pw' IN ROLE app_reporter;
ALTER ROLE app_batch SET statement_timeout = '5min';
"""

APP_SQL = """
CREATE TYPE public.loan_status AS ENUM ('pending', 'active', 'repaid');
CREATE TABLE public.profiles (
    id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
    username text UNIQUE, created_at timestamptz DEFAULT now());
CREATE TABLE public.loans (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id uuid NOT NULL REFERENCES public.profiles (id),
    amount numeric(12, 2) NOT NULL CHECK (amount > 0),
    status public.loan_status NOT NULL DEFAULT 'pending',
    created_at timestamptz DEFAULT now());
CREATE TABLE public.audit_log (id bigserial PRIMARY KEY, what text, at timestamptz);
ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.loans ENABLE ROW LEVEL SECURITY;
CREATE POLICY "own profile" ON public.profiles FOR SELECT TO authenticated
    USING (auth.uid() = id);
CREATE POLICY "own loans" ON public.loans FOR ALL TO authenticated
    USING (auth.uid() = owner_id) WITH CHECK (auth.uid() = owner_id);
REVOKE ALL ON public.audit_log FROM anon, authenticated;
REVOKE ALL ON public.loans FROM anon;
GRANT SELECT ON public.loans TO app_reporter;
CREATE FUNCTION public.handle_new_user() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = '' AS $$
    BEGIN
      INSERT INTO public.profiles (id, username)
      VALUES (new.id, new.raw_user_meta_data ->> 'username');
      RETURN new;
    END $$;
CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users
    FOR EACH ROW EXECUTE FUNCTION public.handle_new_user();
CREATE FUNCTION public.log_loan() RETURNS trigger LANGUAGE plpgsql SET search_path = '' AS $$
    BEGIN
      INSERT INTO public.audit_log (what, at) VALUES ('loan ' || new.id, new.created_at);
      RETURN new;
    END $$;
CREATE TRIGGER loans_audit AFTER INSERT ON public.loans
    FOR EACH ROW EXECUTE FUNCTION public.log_loan();
CREATE FUNCTION public.total_lent(who uuid) RETURNS numeric LANGUAGE sql STABLE
    SET search_path = '' AS $$ SELECT coalesce(sum(amount), 0) FROM public.loans
    WHERE owner_id = who $$;
REVOKE EXECUTE ON FUNCTION public.total_lent(uuid) FROM PUBLIC, anon;
CREATE SCHEMA supabase_migrations;
CREATE TABLE supabase_migrations.schema_migrations (
    version text PRIMARY KEY, statements text[], name text);
INSERT INTO supabase_migrations.schema_migrations
    VALUES ('20261101000000', ARRAY['create table loans'], 'loans');
"""

# Policies on storage.objects: `postgres` creates them where it may (member of the owner);
# in the 2025 generation they were made before the change, so here as supabase_admin.
STORAGE_POLICIES_SQL = """
CREATE POLICY "avatars are public" ON storage.objects FOR SELECT TO public
    USING (bucket_id = 'avatars');
CREATE POLICY "upload own avatar" ON storage.objects FOR INSERT TO authenticated
    WITH CHECK (bucket_id = 'avatars' AND (storage.foldername(name))[1] = auth.uid()::text);
"""

# What the auth and storage services write (as their admin roles) when people use the app.
DATA_SQL = """
INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password,
    raw_app_meta_data, raw_user_meta_data, created_at, updated_at)
SELECT '00000000-0000-0000-0000-000000000000', ('00000000-0000-4000-8000-' ||
       lpad(i::text, 12, '0'))::uuid, 'authenticated', 'authenticated',
       'user' || i || '@example.org', '$2a$10$hash' || i,
       '{"provider": "email"}', jsonb_build_object('username', 'user' || i),
       '2026-11-01'::timestamptz + i * interval '1 hour', '2026-11-02'
FROM generate_series(1, 25) AS i;
INSERT INTO auth.identities (provider_id, user_id, identity_data, provider, created_at)
SELECT u.id::text, u.id, jsonb_build_object('sub', u.id, 'email', u.email), 'email',
       u.created_at FROM auth.users u;
INSERT INTO auth.sessions (id, user_id, created_at)
SELECT gen_random_uuid(), id, created_at FROM auth.users WHERE email LIKE 'user1%';
INSERT INTO auth.refresh_tokens (token, user_id, revoked, session_id, created_at)
SELECT 'tok-' || s.id, s.user_id::text, false, s.id, s.created_at FROM auth.sessions s;
INSERT INTO storage.buckets (id, name, public) VALUES ('avatars', 'avatars', true);
INSERT INTO storage.objects (bucket_id, name, owner, metadata)
SELECT 'avatars', id || '/face.png', id, '{"size": 1024}' FROM auth.users LIMIT 7;
"""

LOANS_SQL = """
INSERT INTO public.loans (owner_id, amount, status, created_at)
SELECT p.id, 100 + i, (ARRAY['pending', 'active', 'repaid']::public.loan_status[])[1 + i % 3],
       '2026-11-10'::timestamptz + i * interval '1 day'
FROM public.profiles p, generate_series(1, 3) AS i;
"""


def connect(cluster: Cluster, dbname: str, user: str = "postgres") -> psycopg.Connection[Any]:
    password = PASSWORD
    return psycopg.connect(cluster.url(dbname, user=user, password=password), autocommit=True)


def run_sql(cluster: Cluster, dbname: str, text: str, user: str = "postgres") -> None:
    with connect(cluster, dbname, user) as conn:
        conn.execute(text)  # type: ignore[arg-type]


def fresh_project(cluster: Cluster, dbname: str, generation: str) -> str:
    """A new project's database (the platform's schemas, no app); its URL as `postgres`."""
    cluster.execute(f'CREATE DATABASE "{dbname}"')
    run_sql(cluster, dbname, _platform_sql(dbname, generation), user=ADMIN)
    return cluster.url(dbname, user="postgres", password=PASSWORD)


def app_project(cluster: Cluster, dbname: str, generation: str) -> str:
    """A project with the app built and used; its URL as `postgres`."""
    url = fresh_project(cluster, dbname, generation)
    # roles are the cluster's: made by the first project built in it
    if not cluster.query("SELECT 1 FROM pg_roles WHERE rolname = 'app_reporter'"):
        run_sql(cluster, dbname, APP_ROLES_SQL)
    run_sql(cluster, dbname, APP_SQL)
    policies_as = "postgres" if generation == "2024" else ADMIN
    run_sql(cluster, dbname, STORAGE_POLICIES_SQL, user=policies_as)
    run_sql(cluster, dbname, DATA_SQL, user=ADMIN)
    run_sql(cluster, dbname, LOANS_SQL)
    return url


@contextmanager
def platform(bin_dir: Any, generation: str) -> Iterator[Cluster]:
    cluster = start_platform(bin_dir, generation)
    try:
        yield cluster
    finally:
        cluster.remove()


Builder = Callable[[str], str]
