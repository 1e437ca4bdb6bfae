-- vpp schema, version 1: device registry and state, time-partitioned
-- telemetry, fleet ticks, operator setpoints, device events, audit log and
-- cluster nodes. Every row carries the node_id that wrote it (DESIGN.md §8).
-- Timestamps are timestamptz; the server works in Unix ms and converts at
-- the boundary.

CREATE TABLE devices (
	device_id          text PRIMARY KEY CHECK (length(device_id) BETWEEN 1 AND 63),
	firmware           text NOT NULL DEFAULT '',
	rated_charge_kw    double precision NOT NULL CHECK (rated_charge_kw >= 0),
	rated_discharge_kw double precision NOT NULL CHECK (rated_discharge_kw >= 0),
	capacity_kwh       double precision NOT NULL CHECK (capacity_kwh >= 0),
	min_soc            double precision NOT NULL CHECK (min_soc BETWEEN 0 AND 1),
	max_soc            double precision NOT NULL CHECK (max_soc BETWEEN 0 AND 1),
	ramp_kw_per_s      double precision NOT NULL CHECK (ramp_kw_per_s >= 0),
	node_id            text NOT NULL,
	first_seen         timestamptz NOT NULL DEFAULT now(),
	last_seen          timestamptz NOT NULL,
	updated_at         timestamptz NOT NULL DEFAULT now()
);

-- The latest estimate per device; written coalesced (newest wins: the
-- upsert only replaces an older as_of, so a replayed row never goes back).
CREATE TABLE device_state (
	device_id      text PRIMARY KEY REFERENCES devices ON DELETE CASCADE,
	node_id        text NOT NULL,
	as_of          timestamptz NOT NULL,
	status         text NOT NULL CHECK (status IN ('online', 'stale', 'degraded', 'offline')),
	power_kw       double precision NOT NULL,
	power_sigma_kw double precision NOT NULL,
	soc            double precision NOT NULL,
	soc_sigma      double precision NOT NULL,
	setpoint_kw    double precision NOT NULL,
	availability   double precision NOT NULL,
	reliability    double precision NOT NULL,
	updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Every telemetry sample. Partitioned by measured_at (clock-corrected);
-- vpp_telemetry_maintain() creates partitions ahead and drops those past
-- retention. The key (device_id, seq, measured_at) deduplicates journal
-- replays: a replayed row is byte-identical to the original, and PostgreSQL
-- requires the partition key in every unique index. No foreign key to
-- devices: unknown devices are rejected by the store before COPY, and a
-- per-row trigger would halve COPY throughput.
CREATE TABLE telemetry (
	device_id      text NOT NULL,
	seq            bigint NOT NULL,
	measured_at    timestamptz NOT NULL,
	received_at    timestamptz NOT NULL,
	power_kw       double precision NOT NULL,
	power_sigma_kw double precision NOT NULL,
	soc            double precision NOT NULL,
	soc_sigma      double precision NOT NULL,
	quality        integer NOT NULL, -- uint32 flags, bit-cast
	node_id        text NOT NULL,
	PRIMARY KEY (device_id, seq, measured_at)
) PARTITION BY RANGE (measured_at);

-- Safety net: a row outside every partition lands here instead of failing
-- its batch. Normally empty.
CREATE TABLE telemetry_default PARTITION OF telemetry DEFAULT;

-- Creates partitions of |part| width covering [now - back, now + ahead] and
-- drops partitions that end before now - retention. Returns the number of
-- partitions created plus dropped. Idempotent; safe to call from several
-- nodes (an advisory lock serialises them).
CREATE FUNCTION vpp_telemetry_maintain(part interval, back interval, ahead interval,
				       retention interval) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
	step_s  double precision := extract(epoch FROM part);
	t       timestamptz;
	lo      timestamptz;
	hi      timestamptz;
	name    text;
	changed integer := 0;
	r       record;
BEGIN
	IF step_s < 60 THEN
		RAISE EXCEPTION 'partition interval too small: %', part;
	END IF;
	PERFORM pg_advisory_xact_lock(7345001);
	t := to_timestamp(floor(extract(epoch FROM now() - back) / step_s) * step_s);
	WHILE t < now() + ahead LOOP
		lo := t;
		hi := t + part;
		name := 'telemetry_p' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS');
		IF to_regclass(quote_ident(name)) IS NULL THEN
			-- Rows that went to the default partition for this range
			-- would block the new partition; move them first.
			EXECUTE format('CREATE TABLE %I (LIKE telemetry INCLUDING DEFAULTS)', name);
			EXECUTE format('WITH moved AS (DELETE FROM telemetry_default '
				       'WHERE measured_at >= %L AND measured_at < %L RETURNING *) '
				       'INSERT INTO %I SELECT * FROM moved', lo, hi, name);
			EXECUTE format('ALTER TABLE telemetry ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
				       name, lo, hi);
			changed := changed + 1;
		END IF;
		t := hi;
	END LOOP;
	FOR r IN
		SELECT c.relname AS name,
		       (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz AS upper
		FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'telemetry'::regclass AND c.relname <> 'telemetry_default'
	LOOP
		IF r.upper IS NOT NULL AND r.upper < now() - retention THEN
			EXECUTE format('DROP TABLE %I', r.name);
			changed := changed + 1;
		END IF;
	END LOOP;
	RETURN changed;
END;
$$;

-- One row per control tick and node: the targets and the Estimates the
-- operator saw (value, sigma, 90% interval).
CREATE TABLE fleet_ticks (
	node_id             text NOT NULL,
	tick_at             timestamptz NOT NULL,
	target_kw           double precision NOT NULL,
	adjusted_target_kw  double precision NOT NULL,
	commanded_kw        double precision NOT NULL,
	measured_kw         double precision NOT NULL,
	measured_sigma_kw   double precision NOT NULL,
	measured_lower_kw   double precision NOT NULL,
	measured_upper_kw   double precision NOT NULL,
	discharge_headroom_kw       double precision NOT NULL,
	discharge_headroom_sigma_kw double precision NOT NULL,
	discharge_headroom_lower_kw double precision NOT NULL,
	discharge_headroom_upper_kw double precision NOT NULL,
	charge_headroom_kw          double precision NOT NULL,
	charge_headroom_sigma_kw    double precision NOT NULL,
	charge_headroom_lower_kw    double precision NOT NULL,
	charge_headroom_upper_kw    double precision NOT NULL,
	energy_kwh          double precision NOT NULL,
	energy_sigma_kwh    double precision NOT NULL,
	energy_lower_kwh    double precision NOT NULL,
	energy_upper_kwh    double precision NOT NULL,
	expected_kw         double precision NOT NULL,
	expected_sigma_kw   double precision NOT NULL,
	expected_lower_kw   double precision NOT NULL,
	expected_upper_kw   double precision NOT NULL,
	devices_online      integer NOT NULL,
	devices_stale       integer NOT NULL,
	devices_degraded    integer NOT NULL,
	devices_offline     integer NOT NULL,
	PRIMARY KEY (node_id, tick_at)
);
CREATE INDEX fleet_ticks_tick_at ON fleet_ticks (tick_at);

-- Operator commands. request_id makes retries idempotent.
CREATE TABLE setpoints (
	setpoint_id   bigserial PRIMARY KEY,
	request_id    text NOT NULL UNIQUE,
	target_kw     double precision NOT NULL,
	valid_for_s   double precision NOT NULL CHECK (valid_for_s > 0),
	ramp_kw_per_s double precision NOT NULL CHECK (ramp_kw_per_s >= 0),
	reason        text NOT NULL DEFAULT '',
	principal     text NOT NULL DEFAULT '',
	node_id       text NOT NULL,
	created_at    timestamptz NOT NULL DEFAULT now()
);

-- Events of a device's life. uid is generated by the writer so that a
-- journal replay inserts each event once.
CREATE TABLE device_events (
	uid       bigint PRIMARY KEY,
	device_id text NOT NULL,
	node_id   text NOT NULL,
	at        timestamptz NOT NULL,
	kind      text NOT NULL CHECK (kind IN ('connect', 'disconnect', 'replaced', 'degraded',
					    'recovered')),
	reason    text NOT NULL DEFAULT ''
);
CREATE INDEX device_events_device_at ON device_events (device_id, at);

CREATE TABLE audit_log (
	uid        bigint PRIMARY KEY,
	at         timestamptz NOT NULL,
	node_id    text NOT NULL,
	principal  text NOT NULL,
	action     text NOT NULL,
	request_id text NOT NULL DEFAULT '',
	detail     text NOT NULL DEFAULT '',
	result     text NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TABLE cluster_nodes (
	node_id      text PRIMARY KEY,
	version      text NOT NULL,
	started_at   timestamptz NOT NULL,
	heartbeat_at timestamptz NOT NULL
);
