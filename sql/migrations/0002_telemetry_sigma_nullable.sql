-- vpp schema, version 2: a telemetry sample's sigma may be NULL, meaning
-- "the device gave none". Devices that report no uncertainty send 0 (proto3
-- cannot tell 0 from unset); storing that 0 claimed an exact measurement.
-- The server now keeps such a sigma as NaN in memory and NULL here, so the
-- stored telemetry says honestly what is not known. A non-NULL sigma is
-- still finite and >= 0 (checked by the store before COPY).
--
-- telemetry is partitioned: DROP NOT NULL on the parent recurses to every
-- attached partition (telemetry_default included), and the partitions
-- vpp_telemetry_maintain() creates later copy the parent's columns
-- (LIKE telemetry), so they accept NULL too; so does the store's staging
-- table (also LIKE telemetry). Only the catalog changes: no row is
-- rewritten or scanned.
--
-- Rows written before this migration keep the 0 they were given. Only
-- telemetry changes: device_state holds the estimator's sigmas, which are
-- always known (the configured default stands in for a missing one), and
-- fleet_ticks holds Estimates.

ALTER TABLE telemetry ALTER COLUMN power_sigma_kw DROP NOT NULL;
ALTER TABLE telemetry ALTER COLUMN soc_sigma DROP NOT NULL;

COMMENT ON COLUMN telemetry.power_sigma_kw IS
	'standard deviation of power_kw as the device reported it; NULL: the device gave none';
COMMENT ON COLUMN telemetry.soc_sigma IS
	'standard deviation of soc as the device reported it; NULL: the device gave none';
