/* The store's local journal: an append-only log of records on local disk
 * that holds what the database could not take yet.
 *
 * Layout: a folder of segment files seg-NNNNNNNNNNNNNNNN.vj (numbered in
 * append order, rolled at a size limit) and a LOCK file (flock'd: one
 * process per folder). Each record is a 16-byte header followed by its
 * payload, little-endian:
 *
 *   u32 magic 0x4a505056 ("VPPJ")  u16 type  u16 reserved (0)
 *   u32 payload length             u32 CRC-32C of bytes 0..11 and the payload
 *
 * A record is valid only if its magic, length and checksum match. Opening a
 * journal scans every segment; the first invalid record of a segment (a
 * torn write after a crash, or corruption) ends it: the segment is truncated
 * there and the discarded bytes are reported, so garbage is never replayed.
 *
 * Durability (fsync policy): appends are buffered in memory until
 * vpp_journal_commit(), which write()s them; with VPP_JOURNAL_FSYNC_ALWAYS it
 * then fdatasync()s, so a committed record survives a power loss; with
 * _INTERVAL, records reach the disk within the interval (a crash of the
 * machine may lose that much); with _NEVER, the kernel decides. A crash of
 * the process alone loses nothing that was committed, under every policy.
 * New segments and deletions also fsync the folder under _ALWAYS.
 *
 * Not thread-safe: one thread owns a journal. */
#ifndef VPP_JOURNAL_H
#define VPP_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

typedef struct vpp_journal vpp_journal;

#define VPP_JOURNAL_HEADER 16
#define VPP_JOURNAL_MAGIC 0x4a505056u
#define VPP_JOURNAL_MAX_RECORD (1u << 20)

typedef struct {
	int fsync_policy;          /* vpp_journal_fsync of vpp/store.h */
	int64_t fsync_interval_ms; /* for _INTERVAL */
	uint64_t segment_bytes;    /* roll to a new segment beyond this */
} vpp_journal_options;

/* A place in the journal: segment number and byte offset in it. */
typedef struct {
	uint64_t seg;
	uint64_t off;
} vpp_journal_pos;

/* Opens (creating if needed) the journal in |dir|, validating every segment
 * as described above. |*discarded| (may be NULL) receives the number of
 * bytes cut off as torn or corrupt. Returns VPP_EIO, VPP_EEXIST (locked by
 * another process), VPP_ENOMEM. */
int vpp_journal_open(const char *dir, const vpp_journal_options *o, vpp_journal **ret,
                     uint64_t *discarded);

/* Flushes (commits) and closes |j|. Accepts NULL. */
void vpp_journal_close(vpp_journal *j);

/* Buffers one record. |len| ≤ VPP_JOURNAL_MAX_RECORD. Returns VPP_ENOMEM or
 * VPP_ETOOBIG. Nothing reaches the file before vpp_journal_commit(). */
int vpp_journal_append(vpp_journal *j, uint16_t type, const void *payload, size_t len);

/* Writes the buffered records, then syncs per the fsync policy. Returns
 * VPP_EIO (the records stay buffered for the next attempt). */
int vpp_journal_commit(vpp_journal *j);

/* For _INTERVAL: syncs if something was written since the last sync. */
int vpp_journal_sync(vpp_journal *j);

/* Reads the record at |*pos| (written and committed records only). On 0,
 * sets |*type|, |*payload| (valid until the next call on |j|), |*len| and
 * advances |*pos| to the next record. Returns VPP_ENOENT at the end,
 * VPP_ECORRUPT if the record changed under us, VPP_EIO, VPP_EAGAIN when
 * the segment cannot be opened for now (out of descriptors: try again
 * later, nothing is wrong with it). A |*pos| of {0, 0}
 * means the oldest record. */
int vpp_journal_read(vpp_journal *j, vpp_journal_pos *pos, uint16_t *type, const void **payload,
                     size_t *len);

/* For a reader that got VPP_ECORRUPT or VPP_EIO at |*pos|: moves |*pos| to
 * the start of the next segment, giving up the rest of the damaged one, and
 * returns the bytes given up. If the damaged segment is the one being
 * written, later records go to a new segment. */
uint64_t vpp_journal_skip_segment(vpp_journal *j, vpp_journal_pos *pos);

/* Forgets every record before |pos|: deletes the segments that end before
 * it; when |pos| is the end of the journal, deletes everything. */
int vpp_journal_release(vpp_journal *j, vpp_journal_pos pos);

/* Position just after the last committed record. */
vpp_journal_pos vpp_journal_end(const vpp_journal *j);

/* Bytes held (committed, not released) plus bytes buffered. */
uint64_t vpp_journal_bytes(const vpp_journal *j);

/* Bytes appended but not yet written: they grow while commits fail. */
uint64_t vpp_journal_unwritten(const vpp_journal *j);

/* CRC-32C (Castagnoli) of |len| bytes, continuing from |crc| (0 to start). */
uint32_t vpp_crc32c(uint32_t crc, const void *data, size_t len);

#endif
