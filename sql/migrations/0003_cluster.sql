-- vpp schema, version 3: the cluster (DESIGN.md §8).
--
-- cluster_nodes gains what a node publishes every tick: who it is (its
-- incarnation, protocol, addresses), its role and the share it obeys, and
-- its aggregate (the node's fleet as one device) with its status, so that
-- the leader can split the fleet target and any node can report the whole
-- fleet. heartbeat_at is by the database's clock (now()), so liveness does
-- not depend on the nodes' clocks.
--
-- cluster_leaders: one row per leadership; its epoch (from PostgreSQL) is
-- the fencing token every share carries.
--
-- cluster_shares: the leader's share for each node, a lease until
-- valid_until_ms. A share is never replaced by one of an older epoch.
--
-- setpoints notify 'vpp_setpoint' on insert, so the leader acts on a new
-- setpoint at once whichever node recorded it.

ALTER TABLE cluster_nodes
	ADD COLUMN incarnation text NOT NULL DEFAULT '',
	ADD COLUMN protocol integer NOT NULL DEFAULT 0,
	ADD COLUMN schema_version integer NOT NULL DEFAULT 0,
	ADD COLUMN api_addr text NOT NULL DEFAULT '',
	ADD COLUMN device_addr text NOT NULL DEFAULT '',
	ADD COLUMN role text NOT NULL DEFAULT 'follower' CHECK (role IN ('leader', 'follower')),
	ADD COLUMN draining boolean NOT NULL DEFAULT false,
	-- Set when the node stops gracefully: dead at once, whatever its
	-- last heartbeat's age.
	ADD COLUMN left_at timestamptz,
	-- Set by an operator (vppctl node drain) on any node; the node reads
	-- it with its heartbeat and drains.
	ADD COLUMN drain_requested boolean NOT NULL DEFAULT false,
	ADD COLUMN epoch bigint NOT NULL DEFAULT 0,
	ADD COLUMN share_kw double precision NOT NULL DEFAULT 0,
	ADD COLUMN agg_a double precision NOT NULL DEFAULT 0,
	ADD COLUMN agg_e_dis_kwh double precision NOT NULL DEFAULT 0,
	ADD COLUMN agg_e_chg_kwh double precision NOT NULL DEFAULT 0,
	ADD COLUMN agg_lo_kw double precision NOT NULL DEFAULT 0,
	ADD COLUMN agg_hi_kw double precision NOT NULL DEFAULT 0,
	-- The node's last tick: vpp_fleet_status, Estimates as value/sigma.
	ADD COLUMN tick_at_ms bigint NOT NULL DEFAULT 0,
	ADD COLUMN status double precision[] NOT NULL DEFAULT '{}';

CREATE TABLE cluster_leaders (
	epoch       bigserial PRIMARY KEY,
	node_id     text NOT NULL,
	acquired_at timestamptz NOT NULL DEFAULT now(),
	-- Set by a leader that stopped leading on purpose (drain, shutdown)
	-- after its last shares were written: the next one need not wait them
	-- out.
	released_at timestamptz
);

-- One row: the epoch allowed to write shares. A leader's publication
-- locks it, and a new leadership moves it, so a publication either
-- commits before the new epoch exists or writes nothing.
CREATE TABLE cluster_fence (
	id    integer PRIMARY KEY CHECK (id = 1),
	epoch bigint NOT NULL
);
INSERT INTO cluster_fence VALUES (1, 0);

CREATE TABLE cluster_shares (
	node_id        text PRIMARY KEY,
	epoch          bigint NOT NULL,
	share_kw       double precision NOT NULL,
	valid_until_ms bigint NOT NULL,
	setpoint_id    bigint NOT NULL DEFAULT 0, -- the operator setpoint split (0: none)
	setpoint_valid_until_ms bigint NOT NULL DEFAULT 0,
	fleet_target_kw double precision NOT NULL DEFAULT 0, -- the operator's
	fleet_eff_kw   double precision NOT NULL DEFAULT 0, -- after its ramp: what was split
	issued_at      timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION vpp_setpoint_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('vpp_setpoint', NEW.setpoint_id::text);
	RETURN NULL;
END;
$$;

CREATE TRIGGER setpoints_notify AFTER INSERT ON setpoints
	FOR EACH ROW EXECUTE FUNCTION vpp_setpoint_notify();
