/* The append-only, checksummed local journal (format in vpp/journal.h). */
#include "vpp/journal.h"
#include "vpp/error.h"
#include "vpp/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define READ_WINDOW (1u << 20)

typedef struct {
	uint64_t no;
	uint64_t size; /* bytes of valid, committed records */
} segment;

struct vpp_journal {
	vpp_journal_options opt;
	char *dir;
	int dirfd;
	int lockfd;

	segment *segs; /* ascending; the last one is the write segment when wfd >= 0 */
	size_t nsegs, segcap;
	uint64_t next_no;
	int wfd;
	uint64_t bytes; /* committed bytes in segs */
	bool unsynced;
	int64_t last_sync_ms;

	unsigned char *wbuf;
	size_t wlen, wcap;

	/* Read window: bytes [roff, roff + rlen) of segment rno. */
	int rfd;
	uint64_t rno, roff;
	size_t rlen;
	unsigned char *rbuf;
	size_t rcap;
};

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void seg_name(uint64_t no, char *out, size_t cap)
{
	snprintf(out, cap, "seg-%016" PRIu64 ".vj", no);
}

/* Checks the record starting at |p| with |avail| bytes available. Returns its
 * total size, or 0 when it is incomplete or invalid. */
static size_t record_check(const unsigned char *p, size_t avail)
{
	if (avail < VPP_JOURNAL_HEADER || get32(p) != VPP_JOURNAL_MAGIC)
		return 0;
	uint32_t len = get32(p + 8);
	if (len > VPP_JOURNAL_MAX_RECORD || avail - VPP_JOURNAL_HEADER < len)
		return 0;
	uint32_t crc = vpp_crc32c(0, p, 12);
	crc = vpp_crc32c(crc, p + VPP_JOURNAL_HEADER, len);
	if (crc != get32(p + 12))
		return 0;
	return VPP_JOURNAL_HEADER + (size_t)len;
}

/* Validates segment |no| record by record and truncates it at the first
 * invalid one. Sets |*valid| to the bytes kept. */
static int seg_scan(vpp_journal *j, uint64_t no, uint64_t *valid, uint64_t *discarded)
{
	char name[64];
	seg_name(no, name, sizeof(name));
	int fd = openat(j->dirfd, name, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return VPP_EIO;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return VPP_EIO;
	}
	uint64_t size = (uint64_t)st.st_size, off = 0;
	size_t cap = READ_WINDOW + VPP_JOURNAL_MAX_RECORD + VPP_JOURNAL_HEADER;
	/* A small segment (the usual torn tail) is read whole, without the
	 * 2 MB window. */
	if (size < cap)
		cap = size ? (size_t)size : 1;
	unsigned char *buf = malloc(cap);
	if (!buf) {
		close(fd);
		return VPP_ENOMEM;
	}
	while (off < size) {
		size_t want = size - off < cap ? (size_t)(size - off) : cap;
		ssize_t n = pread(fd, buf, want, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			/* A read error is not a torn tail: keep the segment
			 * whole and refuse to open rather than truncate it. */
			free(buf);
			close(fd);
			return VPP_EIO;
		}
		if (n == 0)
			break;
		size_t pos = 0, rec;
		while ((rec = record_check(buf + pos, (size_t)n - pos)) != 0)
			pos += rec;
		off += pos;
		/* No progress with a full window available: invalid record. */
		if (pos == 0 || ((size_t)n < want))
			break;
	}
	free(buf);
	if (off < size) {
		if (ftruncate(fd, (off_t)off) != 0 || fsync(fd) != 0) {
			close(fd);
			return VPP_EIO;
		}
		*discarded += size - off;
	}
	close(fd);
	*valid = off;
	return 0;
}

static int seg_push(vpp_journal *j, uint64_t no, uint64_t size)
{
	if (j->nsegs == j->segcap) {
		size_t cap = j->segcap ? j->segcap * 2 : 16;
		segment *s = realloc(j->segs, cap * sizeof(*s));
		if (!s)
			return VPP_ENOMEM;
		j->segs = s;
		j->segcap = cap;
	}
	j->segs[j->nsegs].no = no;
	j->segs[j->nsegs].size = size;
	j->nsegs++;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int load_segments(vpp_journal *j, uint64_t *discarded)
{
	int fd = dup(j->dirfd);
	if (fd < 0)
		return VPP_EIO;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return VPP_EIO;
	}
	uint64_t *nos = NULL;
	size_t n = 0, cap = 0;
	int rv = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		uint64_t no;
		char tail[8];
		if (sscanf(e->d_name, "seg-%16" SCNu64 ".%3s", &no, tail) != 2 ||
		    strcmp(tail, "vj") != 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			uint64_t *t = realloc(nos, cap * sizeof(*t));
			if (!t) {
				rv = VPP_ENOMEM;
				goto out;
			}
			nos = t;
		}
		nos[n++] = no;
	}
	if (n)
		qsort(nos, n, sizeof(*nos), cmp_u64);
	for (size_t i = 0; i < n; i++) {
		uint64_t valid;
		if ((rv = seg_scan(j, nos[i], &valid, discarded)) != 0)
			goto out;
		if (valid == 0) {
			char name[64];
			seg_name(nos[i], name, sizeof(name));
			unlinkat(j->dirfd, name, 0);
		} else if ((rv = seg_push(j, nos[i], valid)) != 0) {
			goto out;
		} else {
			j->bytes += valid;
		}
		if (nos[i] >= j->next_no)
			j->next_no = nos[i] + 1;
	}
out:
	free(nos);
	closedir(d);
	return rv;
}

int vpp_journal_open(const char *dir, const vpp_journal_options *o, vpp_journal **ret,
                     uint64_t *discarded)
{
	int rv = VPP_ENOMEM;
	uint64_t disc = 0;
	vpp_journal *j = calloc(1, sizeof(*j));
	if (!j)
		return VPP_ENOMEM;
	j->opt = *o;
	if (j->opt.segment_bytes == 0)
		j->opt.segment_bytes = 64u << 20;
	j->wfd = j->rfd = j->dirfd = j->lockfd = -1;
	j->next_no = 1;
	if (!(j->dir = strdup(dir)))
		goto fail;
	rv = VPP_EIO;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		goto fail;
	if ((j->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		goto fail;
	if ((j->lockfd = openat(j->dirfd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
		goto fail;
	if (flock(j->lockfd, LOCK_EX | LOCK_NB) != 0) {
		rv = errno == EWOULDBLOCK ? VPP_EEXIST : VPP_EIO;
		goto fail;
	}
	if ((rv = load_segments(j, &disc)) != 0)
		goto fail;
	j->last_sync_ms = mono_ms();
	if (discarded)
		*discarded = disc;
	*ret = j;
	return 0;
fail:
	vpp_journal_close(j);
	return rv;
}

void vpp_journal_close(vpp_journal *j)
{
	if (!j)
		return;
	if (j->wlen)
		vpp_journal_commit(j);
	if (j->wfd >= 0) {
		fdatasync(j->wfd);
		close(j->wfd);
	}
	if (j->rfd >= 0)
		close(j->rfd);
	if (j->lockfd >= 0)
		close(j->lockfd);
	if (j->dirfd >= 0)
		close(j->dirfd);
	free(j->segs);
	free(j->wbuf);
	free(j->rbuf);
	free(j->dir);
	free(j);
}

int vpp_journal_append(vpp_journal *j, uint16_t type, const void *payload, size_t len)
{
	if (len > VPP_JOURNAL_MAX_RECORD)
		return VPP_ETOOBIG;
	size_t need = j->wlen + VPP_JOURNAL_HEADER + len;
	if (need > j->wcap) {
		size_t cap = j->wcap ? j->wcap : 65536;
		while (cap < need)
			cap *= 2;
		unsigned char *b = realloc(j->wbuf, cap);
		if (!b)
			return VPP_ENOMEM;
		j->wbuf = b;
		j->wcap = cap;
	}
	unsigned char *h = j->wbuf + j->wlen;
	put32(h, VPP_JOURNAL_MAGIC);
	h[4] = (unsigned char)type;
	h[5] = (unsigned char)(type >> 8);
	h[6] = h[7] = 0;
	put32(h + 8, (uint32_t)len);
	if (len)
		memcpy(h + VPP_JOURNAL_HEADER, payload, len);
	uint32_t crc = vpp_crc32c(0, h, 12);
	crc = vpp_crc32c(crc, h + VPP_JOURNAL_HEADER, len);
	put32(h + 12, crc);
	j->wlen = need;
	return 0;
}

static int open_write_segment(vpp_journal *j)
{
	char name[64];
	uint64_t no = j->next_no;
	seg_name(no, name, sizeof(name));
	int fd = openat(j->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return VPP_EIO;
	int rv = seg_push(j, no, 0);
	if (rv != 0) {
		close(fd);
		unlinkat(j->dirfd, name, 0);
		return rv;
	}
	if (j->opt.fsync_policy == VPP_JOURNAL_FSYNC_ALWAYS)
		fsync(j->dirfd);
	j->next_no = no + 1;
	j->wfd = fd;
	return 0;
}

int vpp_journal_sync(vpp_journal *j)
{
	if (j->wfd >= 0 && j->unsynced) {
		if (fdatasync(j->wfd) != 0)
			return VPP_EIO;
		j->unsynced = false;
	}
	j->last_sync_ms = mono_ms();
	return 0;
}

int vpp_journal_commit(vpp_journal *j)
{
	int rv;
	if (j->wlen == 0)
		goto sync;
	if (j->wfd >= 0 && j->segs[j->nsegs - 1].size >= j->opt.segment_bytes) {
		/* Roll: the old write segment is complete and synced. */
		if (fdatasync(j->wfd) != 0)
			return VPP_EIO;
		close(j->wfd);
		j->wfd = -1;
	}
	if (j->wfd < 0 && (rv = open_write_segment(j)) != 0)
		return rv;
	segment *s = &j->segs[j->nsegs - 1];
	size_t done = 0;
	while (done < j->wlen) {
		ssize_t n = write(j->wfd, j->wbuf + done, j->wlen - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* Cut the partial write so the segment stays well-formed. */
			if (ftruncate(j->wfd, (off_t)s->size) != 0) {
				close(j->wfd);
				j->wfd = -1;
			}
			return VPP_EIO;
		}
		done += (size_t)n;
	}
	s->size += j->wlen;
	j->bytes += j->wlen;
	j->wlen = 0;
	j->unsynced = true;
sync:
	if (j->opt.fsync_policy == VPP_JOURNAL_FSYNC_ALWAYS ||
	    (j->opt.fsync_policy == VPP_JOURNAL_FSYNC_INTERVAL &&
	     mono_ms() - j->last_sync_ms >= j->opt.fsync_interval_ms))
		return vpp_journal_sync(j);
	return 0;
}

static const segment *seg_find(const vpp_journal *j, uint64_t no)
{
	for (size_t i = 0; i < j->nsegs; i++)
		if (j->segs[i].no >= no)
			return &j->segs[i];
	return NULL;
}

/* Makes bytes [off, off + need) of segment |no| available in the read
 * window. */
static int window_fill(vpp_journal *j, uint64_t no, uint64_t off, size_t need, uint64_t size)
{
	if (j->rfd >= 0 && j->rno == no && off >= j->roff && off + need <= j->roff + j->rlen)
		return 0;
	if (j->rfd < 0 || j->rno != no) {
		char name[64];
		if (j->rfd >= 0)
			close(j->rfd);
		seg_name(no, name, sizeof(name));
		j->rfd = openat(j->dirfd, name, O_RDONLY | O_CLOEXEC);
		j->rno = no;
		j->rlen = 0;
		/* Out of descriptors or memory says nothing of the segment:
		 * the caller tries again later rather than giving it up. */
		if (j->rfd < 0)
			return errno == EMFILE || errno == ENFILE || errno == ENOMEM ||
					       errno == EINTR
				       ? VPP_EAGAIN
				       : VPP_EIO;
	}
	size_t want = need > READ_WINDOW ? need : READ_WINDOW;
	if (size - off < want)
		want = (size_t)(size - off);
	if (want > j->rcap) {
		unsigned char *b = realloc(j->rbuf, want);
		if (!b)
			return VPP_ENOMEM;
		j->rbuf = b;
		j->rcap = want;
	}
	size_t got = 0;
	while (got < want) {
		ssize_t n = pread(j->rfd, j->rbuf + got, want - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return VPP_EIO;
		got += (size_t)n;
	}
	j->roff = off;
	j->rlen = got;
	return need <= got ? 0 : VPP_ECORRUPT;
}

int vpp_journal_read(vpp_journal *j, vpp_journal_pos *pos, uint16_t *type, const void **payload,
                     size_t *len)
{
	vpp_journal_pos p = *pos;
	const segment *s = seg_find(j, p.seg);
	if (!s)
		return VPP_ENOENT;
	if (s->no != p.seg)
		p.off = 0;
	p.seg = s->no;
	while (p.off >= s->size) {
		if (s == &j->segs[j->nsegs - 1])
			return VPP_ENOENT;
		s++;
		p.seg = s->no;
		p.off = 0;
	}
	int rv = window_fill(j, p.seg, p.off, VPP_JOURNAL_HEADER, s->size);
	if (rv != 0)
		return rv;
	const unsigned char *h = j->rbuf + (p.off - j->roff);
	uint32_t plen = get32(h + 8);
	if (get32(h) != VPP_JOURNAL_MAGIC || plen > VPP_JOURNAL_MAX_RECORD ||
	    p.off + VPP_JOURNAL_HEADER + plen > s->size)
		return VPP_ECORRUPT;
	if ((rv = window_fill(j, p.seg, p.off, VPP_JOURNAL_HEADER + plen, s->size)) != 0)
		return rv;
	h = j->rbuf + (p.off - j->roff);
	if (record_check(h, VPP_JOURNAL_HEADER + plen) == 0)
		return VPP_ECORRUPT;
	*type = (uint16_t)(h[4] | h[5] << 8);
	*payload = h + VPP_JOURNAL_HEADER;
	*len = plen;
	p.off += VPP_JOURNAL_HEADER + plen;
	*pos = p;
	return 0;
}

uint64_t vpp_journal_skip_segment(vpp_journal *j, vpp_journal_pos *pos)
{
	const segment *s = seg_find(j, pos->seg);
	if (!s)
		return 0;
	uint64_t off = s->no == pos->seg ? pos->off : 0;
	if (s == &j->segs[j->nsegs - 1] && j->wfd >= 0) {
		/* New records must not land after the damage, out of reach. */
		fdatasync(j->wfd);
		close(j->wfd);
		j->wfd = -1;
	}
	pos->seg = s->no + 1;
	pos->off = 0;
	return s->size > off ? s->size - off : 0;
}

vpp_journal_pos vpp_journal_end(const vpp_journal *j)
{
	vpp_journal_pos p = {0, 0};
	if (j->nsegs) {
		p.seg = j->segs[j->nsegs - 1].no;
		p.off = j->segs[j->nsegs - 1].size;
	}
	return p;
}

static void seg_delete(vpp_journal *j, size_t i)
{
	char name[64];
	seg_name(j->segs[i].no, name, sizeof(name));
	if (j->rfd >= 0 && j->rno == j->segs[i].no) {
		close(j->rfd);
		j->rfd = -1;
	}
	unlinkat(j->dirfd, name, 0);
	j->bytes -= j->segs[i].size;
}

int vpp_journal_release(vpp_journal *j, vpp_journal_pos pos)
{
	vpp_journal_pos end = vpp_journal_end(j);
	bool all = j->nsegs && pos.seg == end.seg && pos.off >= end.off;
	size_t keep = 0;
	while (keep < j->nsegs && j->segs[keep].no < pos.seg)
		keep++;
	if (all) {
		keep = j->nsegs;
		if (j->wfd >= 0) {
			close(j->wfd);
			j->wfd = -1;
		}
	} else if (keep == j->nsegs) {
		/* |pos| is past every segment but not the end: keep the write one. */
		keep = j->nsegs - (j->wfd >= 0);
	}
	if (keep == 0)
		return 0;
	for (size_t i = 0; i < keep; i++)
		seg_delete(j, i);
	memmove(j->segs, j->segs + keep, (j->nsegs - keep) * sizeof(*j->segs));
	j->nsegs -= keep;
	if (j->opt.fsync_policy == VPP_JOURNAL_FSYNC_ALWAYS)
		fsync(j->dirfd);
	return 0;
}

uint64_t vpp_journal_bytes(const vpp_journal *j)
{
	return j->bytes + j->wlen;
}

uint64_t vpp_journal_unwritten(const vpp_journal *j)
{
	return j->wlen;
}
