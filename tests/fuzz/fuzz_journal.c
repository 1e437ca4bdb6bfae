/* libFuzzer target for journal recovery (server/store/journal.c): segment
 * files written from the input into a scratch folder, opened as vppd opens
 * its journal after a crash, every record read back and decoded as the
 * store's replay decodes it (telemetry rows, write statements).
 *
 * Input: byte 0 picks the mode.
 *   even: raw segments: byte 1 says how many (1..4); the rest is cut into
 *         that many equal parts, each a segment file as is.
 *   odd:  records: [u8 type][u16 LE length][payload]... framed with valid
 *         headers and checksums into one segment, then damaged as bytes 1..4
 *         say (cut the tail by byte 1, flip byte at offset bytes 2..3 with
 *         the mask of byte 4), so that torn and corrupted records are tried
 *         behind good ones.
 *
 * Recovery must keep exactly the valid prefix of each segment: the bytes
 * kept plus the bytes discarded are the bytes written, every kept record
 * reads back, a second open discards nothing, and an append after recovery
 * is read back behind the kept records. */
#include "../../server/store/store_int.h"
#include "vpp/error.h"
#include "vpp/journal.h"
#include "vpp/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[256];

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void clear_dir(void)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	char path[512];
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
}

static void write_file(uint64_t no, const void *p, size_t n)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/seg-%016llu.vj", dir, (unsigned long long)no);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		abort();
	if (n && write(fd, p, n) != (ssize_t)n)
		abort();
	close(fd);
}

/* Frames |in| as records with valid checksums into |out|; returns the
 * bytes written. */
static size_t frame(const uint8_t *in, size_t n, unsigned char *out)
{
	size_t o = 0, i = 0;
	while (n - i >= 3) {
		uint16_t type = in[i];
		size_t len = (size_t)in[i + 1] | (size_t)in[i + 2] << 8;
		i += 3;
		if (len > n - i)
			len = n - i;
		unsigned char *h = out + o;
		put32(h, VPP_JOURNAL_MAGIC);
		h[4] = (unsigned char)type;
		h[5] = 0;
		h[6] = h[7] = 0;
		put32(h + 8, (uint32_t)len);
		memcpy(h + VPP_JOURNAL_HEADER, in + i, len);
		uint32_t crc = vpp_crc32c(0, h, 12);
		crc = vpp_crc32c(crc, h + VPP_JOURNAL_HEADER, len);
		put32(h + 12, crc);
		o += VPP_JOURNAL_HEADER + len;
		i += len;
	}
	return o;
}

/* Reads every record as the store's replay does. Returns how many. */
static size_t replay(vpp_journal *j, uint64_t *bytes)
{
	vpp_journal_pos pos = {0, 0};
	size_t n = 0;
	*bytes = 0;
	for (;;) {
		uint16_t type;
		const void *p;
		size_t len;
		int rv = vpp_journal_read(j, &pos, &type, &p, &len);
		if (rv == VPP_ENOENT)
			break;
		if (rv != 0)
			abort(); /* recovery kept a record it cannot read */
		n++;
		*bytes += VPP_JOURNAL_HEADER + len;
		if (type == VPP__JREC_TELEMETRY) {
			vpp_telemetry_row row;
			if (vpp__row_decode(p, len, &row) == 0 &&
			    !memchr(row.device_id, 0, sizeof(row.device_id)))
				abort();
		} else if (type == VPP__JREC_STMT) {
			const char *params[32];
			vpp__stmt_id id;
			int np;
			if (vpp__stmt_parse(p, len, &id, params, &np) == 0) {
				if (id >= VPP__ST__COUNT || np != vpp__stmts[id].nparams)
					abort();
				for (int k = 0; k < np; k++)
					if (params[k] && strlen(params[k]) >= len)
						abort();
			}
		}
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir[0]) {
		/* tmpfs when there is one: recovery fsyncs what it truncates. */
		const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
		snprintf(dir, sizeof(dir), "%s/vpp-fuzz-journal.XXXXXX", base);
		if (!mkdtemp(dir))
			abort();
	}
	if (size < 2 || size > (1u << 16))
		return 0;
	clear_dir();
	size_t written = 0;
	if (data[0] % 2 == 0) {
		size_t nseg = (size_t)data[1] % 4 + 1, body = size - 2, part = body / nseg;
		for (size_t i = 0; i < nseg; i++) {
			size_t n = i + 1 == nseg ? body - part * i : part;
			write_file(i + 1, data + 2 + part * i, n);
			written += n;
		}
	} else {
		if (size < 5)
			return 0;
		unsigned char *seg = malloc((size / 3 + 1) * VPP_JOURNAL_HEADER + size);
		if (!seg)
			return 0;
		size_t n = frame(data + 5, size - 5, seg);
		size_t cut = data[1] < n ? data[1] : n;
		n -= cut;
		size_t at = (size_t)data[2] | (size_t)data[3] << 8;
		if (n && data[4])
			seg[at % n] ^= data[4];
		write_file(7, seg, n);
		written = n;
		free(seg);
	}

	vpp_journal_options o = {.fsync_policy = VPP_JOURNAL_FSYNC_NEVER};
	vpp_journal *j;
	uint64_t discarded = 0;
	if (vpp_journal_open(dir, &o, &j, &discarded) != 0)
		abort();
	uint64_t bytes;
	size_t nrec = replay(j, &bytes);
	if (bytes != vpp_journal_bytes(j) || bytes + discarded != written)
		abort();
	/* New records go behind what recovery kept. */
	static const char payload[] = "after recovery";
	if (vpp_journal_append(j, VPP__JREC_STMT, payload, sizeof(payload)) != 0 ||
	    vpp_journal_commit(j) != 0)
		abort();
	vpp_journal_close(j);

	if (vpp_journal_open(dir, &o, &j, &discarded) != 0 || discarded != 0)
		abort();
	uint64_t bytes2;
	if (replay(j, &bytes2) != nrec + 1 ||
	    bytes2 != bytes + VPP_JOURNAL_HEADER + sizeof(payload))
		abort();
	vpp_journal_close(j);
	return 0;
}
