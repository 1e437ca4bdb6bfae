/* The store's journal: records survive a reopen byte for byte, a torn or
 * corrupt tail is cut off and never read back, segments roll and are
 * released, one process per folder, and CRC-32C matches the standard. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vpp/error.h"
#include "vpp/journal.h"

static char dir[64];

/* pread fails with this errno while it is not 0 (linked with
 * -Wl,--wrap=pread64, the symbol glibc gives pread with 64-bit offsets:
 * the journal's reads come here). */
static int pread_fails;

ssize_t __real_pread64(int fd, void *buf, size_t n, off_t off);
ssize_t __wrap_pread64(int fd, void *buf, size_t n, off_t off);

ssize_t __wrap_pread64(int fd, void *buf, size_t n, off_t off)
{
	if (pread_fails) {
		errno = pread_fails;
		return -1;
	}
	return __real_pread64(fd, buf, n, off);
}

static void mkdir_tmp(void)
{
	snprintf(dir, sizeof(dir), "/tmp/vpp-journal-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void rm_tmp(void)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char p[512];
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static vpp_journal_options opts(uint64_t seg)
{
	vpp_journal_options o = {0, 0, seg};
	return o;
}

/* Record |i|: |i| % 300 + 1 bytes of a pattern derived from |i|. */
static size_t rec(int i, unsigned char *buf)
{
	size_t n = (size_t)(i % 300) + 1;
	for (size_t k = 0; k < n; k++)
		buf[k] = (unsigned char)(i * 31 + (int)k);
	return n;
}

static void append_n(vpp_journal *j, int from, int to)
{
	unsigned char buf[512];
	for (int i = from; i < to; i++)
		ck_assert_int_eq(vpp_journal_append(j, (uint16_t)(i % 3 + 1), buf, rec(i, buf)), 0);
	ck_assert_int_eq(vpp_journal_commit(j), 0);
}

/* Reads every record and checks it is record from..to-1 in order. */
static void expect_records(vpp_journal *j, int from, int to)
{
	vpp_journal_pos pos = {0, 0};
	unsigned char want[512];
	uint16_t type;
	const void *p;
	size_t len;
	int i = from;
	while (vpp_journal_read(j, &pos, &type, &p, &len) == 0) {
		ck_assert_int_lt(i, to);
		size_t n = rec(i, want);
		ck_assert_uint_eq(len, n);
		ck_assert_uint_eq(type, (unsigned)(i % 3 + 1));
		ck_assert_int_eq(memcmp(p, want, n), 0);
		i++;
	}
	ck_assert_int_eq(i, to);
}

static char *only_segment(void)
{
	static char path[512];
	DIR *d = opendir(dir);
	struct dirent *e;
	path[0] = 0;
	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, "seg-", 4) == 0)
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
	closedir(d);
	ck_assert(path[0]);
	return path;
}

START_TEST(crc32c_standard_vector)
{
	ck_assert_uint_eq(vpp_crc32c(0, "123456789", 9), 0xe3069283u);
	/* Incremental equals one-shot. */
	uint32_t c = vpp_crc32c(0, "1234", 4);
	ck_assert_uint_eq(vpp_crc32c(c, "56789", 5), 0xe3069283u);
	ck_assert_uint_eq(vpp_crc32c(0, "", 0), 0);
}
END_TEST

START_TEST(roundtrip_across_reopen)
{
	vpp_journal *j;
	vpp_journal_options o = opts(0);
	uint64_t disc = 99;
	mkdir_tmp();
	ck_assert_int_eq(vpp_journal_open(dir, &o, &j, &disc), 0);
	ck_assert_uint_eq(disc, 0);
	ck_assert_uint_eq(vpp_journal_bytes(j), 0);
	append_n(j, 0, 1000);
	expect_records(j, 0, 1000);
	vpp_journal_close(j);

	ck_assert_int_eq(vpp_journal_open(dir, &o, &j, &disc), 0);
	ck_assert_uint_eq(disc, 0);
	expect_records(j, 0, 1000);
	/* Appends after a reopen follow the old records. */
	append_n(j, 1000, 1100);
	expect_records(j, 0, 1100);
	vpp_journal_close(j);
	rm_tmp();
}
END_TEST

START_TEST(uncommitted_records_are_not_readable)
{
	vpp_journal *j;
	vpp_journal_options o = opts(0);
	mkdir_tmp();
	ck_assert_int_eq(vpp_journal_open(dir, &o, &j, NULL), 0);
	unsigned char buf[16] = {1};
	ck_assert_int_eq(vpp_journal_append(j, 1, buf, sizeof(buf)), 0);
	vpp_journal_pos pos = {0, 0};
	uint16_t type;
	const void *p;
	size_t len;
	ck_assert_int_eq(vpp_journal_read(j, &pos, &type, &p, &len), VPP_ENOENT);
	ck_assert_uint_eq(vpp_journal_bytes(j), VPP_JOURNAL_HEADER + sizeof(buf));
	ck_assert_int_eq(vpp_journal_commit(j), 0);
	ck_assert_int_eq(vpp_journal_read(j, &pos, &type, &p, &len), 0);
	vpp_journal_close(j);
	rm_tmp();
}
END_TEST

START_TEST(torn_last_record_is_cut)
{
	vpp_journal *j;
	vpp_journal_options o = opts(0);
	uint64_t disc = 0;
	mkdir_tmp();
	ck_assert_int_eq(vpp_journal_open(dir, &o, &j, NULL), 0);
	append_n(j, 0, 50);
	vpp_journal_close(j);

	/* A crash mid-write: the last record lost its last 7 bytes. */
	char *seg = only_segment();
	struct stat st;
	ck_assert_int_eq(stat(seg, &st), 0);
	ck_assert_int_eq(truncate(seg, st.st_size - 7), 0);

	ck_assert_int_eq(vpp_journal_open(dir, &o, &j, &disc), 0);
	unsigned char tmp[512];
	ck_assert_uint_eq(disc, VPP_JOURNAL_HEADER + rec(49, tmp) - 7);
	expect_records(j, 0, 49);
	/* The cut is durable and later appends read back cleanly. */
	append_n(j, 49, 60);
	expect_records(j, 0, 60);
	vpp_journal_close(j);
	ck_assert_int_eq(vpp_journal_open(dir, &o, &j, &disc), 0);
	ck_assert_uint_eq(disc, 0);
	expect_records(j, 0, 60);
	vpp_journal_close(j);
	rm_tmp();
}
END_TEST

START_TEST(torn_header_is_cut)
{
	vpp_journal *j;
	vpp_journal_options o = opts(0);
	uint64_t disc = 0;
	mkdir_tmp();
	ck_assert_int_eq(vpp_journal_open(dir, &o, &j, NULL), 0);
	append_n(j, 0, 10);
	vpp_journal_close(j);
	/* Only 5 bytes of a new header made it to disk. */
	int fd = open(only_segment(), O_WRONLY | O_APPEND);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "VPPJ\x01", 5), 5);
	close(fd);
	ck_assert_int_eq(vpp_journal_open(dir, &o, &j, &disc), 0);
	ck_assert_uint_eq(disc, 5);
	expect_records(j, 0, 10);
	vpp_journal_close(j);
	rm_tmp();
}
END_TEST

START_TEST(corrupt_payload_is_detected)
{
	vpp_journal *j;
	vpp_journal_options o = opts(0);
	uint64_t disc = 0;
	mkdir_tmp();
	ck_assert_int_eq(vpp_journal_open(dir, &o, &j, NULL), 0);
	append_n(j, 0, 20);
	vpp_journal_close(j);
	/* Flip one bit inside the last record's payload: same length, so only
	 * the checksum can tell. */
	char *seg = only_segment();
	struct stat st;
	ck_assert_int_eq(stat(seg, &st), 0);
	int fd = open(seg, O_RDWR);
	unsigned char b;
	ck_assert_int_eq(pread(fd, &b, 1, st.st_size - 3), 1);
	b ^= 0x10;
	ck_assert_int_eq(pwrite(fd, &b, 1, st.st_size - 3), 1);
	close(fd);
	ck_assert_int_eq(vpp_journal_open(dir, &o, &j, &disc), 0);
	unsigned char tmp[512];
	ck_assert_uint_eq(disc, VPP_JOURNAL_HEADER + rec(19, tmp));
	expect_records(j, 0, 19);
	vpp_journal_close(j);
	rm_tmp();
}
END_TEST

START_TEST(garbage_tail_is_cut)
{
	vpp_journal *j;
	vpp_journal_options o = opts(0);
	uint64_t disc = 0;
	mkdir_tmp();
	ck_assert_int_eq(vpp_journal_open(dir, &o, &j, NULL), 0);
	append_n(j, 0, 5);
	vpp_journal_close(j);
	int fd = open(only_segment(), O_WRONLY | O_APPEND);
	unsigned char junk[100];
	for (int i = 0; i < 100; i++)
		junk[i] = (unsigned char)(i * 7 + 3);
	ck_assert_int_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);
	ck_assert_int_eq(vpp_journal_open(dir, &o, &j, &disc), 0);
	ck_assert_uint_eq(disc, 100);
	expect_records(j, 0, 5);
	vpp_journal_close(j);
	rm_tmp();
}
END_TEST

START_TEST(segments_roll_and_release)
{
	vpp_journal *j;
	vpp_journal_options o = opts(4096);
	mkdir_tmp();
	ck_assert_int_eq(vpp_journal_open(dir, &o, &j, NULL), 0);
	for (int k = 0; k < 20; k++)
		append_n(j, k * 50, (k + 1) * 50);
	expect_records(j, 0, 1000);
	uint64_t total = vpp_journal_bytes(j);

	/* Read half, release up to there: older segments go, the rest stays. */
	vpp_journal_pos pos = {0, 0};
	uint16_t type;
	const void *p;
	size_t len;
	for (int i = 0; i < 500; i++)
		ck_assert_int_eq(vpp_journal_read(j, &pos, &type, &p, &len), 0);
	ck_assert_int_eq(vpp_journal_release(j, pos), 0);
	ck_assert_uint_lt(vpp_journal_bytes(j), total);
	ck_assert_uint_gt(vpp_journal_bytes(j), 0);
	/* What remains starts at or before record 500 and ends at 999. */
	vpp_journal_pos q = {0, 0};
	int n = 0;
	while (vpp_journal_read(j, &q, &type, &p, &len) == 0)
		n++;
	ck_assert_int_ge(n, 500);
	ck_assert_int_lt(n, 1000);

	/* Releasing at the end empties the journal, which keeps working. */
	ck_assert_int_eq(vpp_journal_release(j, vpp_journal_end(j)), 0);
	ck_assert_uint_eq(vpp_journal_bytes(j), 0);
	append_n(j, 0, 10);
	expect_records(j, 0, 10);
	vpp_journal_close(j);
	ck_assert_int_eq(vpp_journal_open(dir, &o, &j, NULL), 0);
	expect_records(j, 0, 10);
	vpp_journal_close(j);
	rm_tmp();
}
END_TEST

START_TEST(one_owner_per_folder)
{
	vpp_journal *a, *b = NULL;
	vpp_journal_options o = opts(0);
	mkdir_tmp();
	ck_assert_int_eq(vpp_journal_open(dir, &o, &a, NULL), 0);
	ck_assert_int_eq(vpp_journal_open(dir, &o, &b, NULL), VPP_EEXIST);
	ck_assert_ptr_null(b);
	vpp_journal_close(a);
	ck_assert_int_eq(vpp_journal_open(dir, &o, &b, NULL), 0);
	vpp_journal_close(b);
	vpp_journal_close(NULL);
	rm_tmp();
}
END_TEST

START_TEST(oversized_record_refused)
{
	vpp_journal *j;
	vpp_journal_options o = opts(0);
	mkdir_tmp();
	ck_assert_int_eq(vpp_journal_open(dir, &o, &j, NULL), 0);
	unsigned char *big = calloc(1, VPP_JOURNAL_MAX_RECORD + 1);
	ck_assert_int_eq(vpp_journal_append(j, 1, big, VPP_JOURNAL_MAX_RECORD + 1), VPP_ETOOBIG);
	ck_assert_uint_eq(vpp_journal_bytes(j), 0);
	free(big);
	vpp_journal_close(j);
	rm_tmp();
}
END_TEST

/* Flips a byte |back| bytes before the end of the |nth| segment (1-based;
 * 0: the last one). */
static void damage_segment(int nth, off_t back)
{
	char names[16][256];
	int n = 0;
	DIR *d = opendir(dir);
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, "seg-", 4) == 0 && n < 16)
			snprintf(names[n++], sizeof(names[0]), "%s", e->d_name);
	closedir(d);
	qsort(names, (size_t)n, sizeof(names[0]), (int (*)(const void *, const void *))strcmp);
	ck_assert_int_ge(n, nth);
	if (nth == 0)
		nth = n;
	char path[512];
	snprintf(path, sizeof(path), "%s/%.300s", dir, names[nth - 1]);
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	int fd = open(path, O_RDWR);
	unsigned char b;
	ck_assert_int_eq(pread(fd, &b, 1, st.st_size - back), 1);
	b ^= 0x10;
	ck_assert_int_eq(pwrite(fd, &b, 1, st.st_size - back), 1);
	close(fd);
}

/* Reads to the end, skipping damaged segments; returns the records read. */
static int read_skipping(vpp_journal *j, uint64_t *skipped)
{
	vpp_journal_pos pos = {0, 0};
	uint16_t type;
	const void *p;
	size_t len;
	int n = 0, rv;
	*skipped = 0;
	while ((rv = vpp_journal_read(j, &pos, &type, &p, &len)) != VPP_ENOENT) {
		if (rv == VPP_ECORRUPT)
			*skipped += vpp_journal_skip_segment(j, &pos);
		else
			n++;
	}
	return n;
}

/* A record damaged after open (a disk error) costs the rest of its segment,
 * not the segments after it; a damaged write segment is closed, so that new
 * records stay readable. */
/* Out of descriptors says nothing about a segment: reading it reports
 * "try again" (the store retries) instead of damage (it would give up the
 * rest of the segment, and release would delete it). */
START_TEST(out_of_descriptors_is_not_damage)
{
	vpp_journal *j;
	vpp_journal_options o = opts(0);
	uint64_t disc;
	mkdir_tmp();
	ck_assert_int_eq(vpp_journal_open(dir, &o, &j, &disc), 0);
	append_n(j, 0, 10);
	vpp_journal_close(j);
	ck_assert_int_eq(vpp_journal_open(dir, &o, &j, &disc), 0);

	struct rlimit was, few;
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &was), 0);
	few = was;
	few.rlim_cur = 64;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &few), 0);
	int fds[64], n = 0, fd;
	while (n < 64 && (fd = open("/dev/null", O_RDONLY)) >= 0)
		fds[n++] = fd;
	ck_assert_int_eq(errno, EMFILE);
	vpp_journal_pos pos = {0, 0};
	uint16_t type;
	const void *p;
	size_t len;
	int rv = vpp_journal_read(j, &pos, &type, &p, &len);
	while (n > 0)
		close(fds[--n]);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &was), 0);
	ck_assert_int_eq(rv, VPP_EAGAIN);
	ck_assert_uint_eq(pos.seg, 0);
	ck_assert_uint_eq(pos.off, 0);
	expect_records(j, 0, 10); /* once descriptors are back, all there */
	vpp_journal_close(j);
	rm_tmp();
}
END_TEST

/* A segment that cannot be read at open (a disk error) is not a torn
 * tail: the open is refused and the segment left whole, not cut to what
 * was read (nothing) and deleted. */
START_TEST(read_error_at_open_keeps_the_segment)
{
	vpp_journal *j;
	vpp_journal_options o = opts(0);
	uint64_t disc = 0;
	mkdir_tmp();
	ck_assert_int_eq(vpp_journal_open(dir, &o, &j, &disc), 0);
	append_n(j, 0, 10);
	uint64_t bytes = vpp_journal_bytes(j);
	vpp_journal_close(j);

	pread_fails = EIO;
	int rv = vpp_journal_open(dir, &o, &j, &disc);
	pread_fails = 0;
	ck_assert_int_eq(rv, VPP_EIO);
	ck_assert_int_eq(vpp_journal_open(dir, &o, &j, &disc), 0);
	ck_assert_uint_eq(disc, 0);
	ck_assert_uint_eq(vpp_journal_bytes(j), bytes);
	expect_records(j, 0, 10);
	vpp_journal_close(j);
	rm_tmp();
}
END_TEST

START_TEST(damage_found_while_reading_skips_one_segment)
{
	vpp_journal *j;
	vpp_journal_options o = opts(4096);
	mkdir_tmp();
	ck_assert_int_eq(vpp_journal_open(dir, &o, &j, NULL), 0);
	for (int k = 0; k < 20; k++)
		append_n(j, k * 20, (k + 1) * 20);
	/* The second segment's last record, after the journal was opened. */
	damage_segment(2, 3);
	uint64_t skipped;
	int n = read_skipping(j, &skipped);
	ck_assert_uint_gt(skipped, 0);
	ck_assert_uint_lt(skipped, 4096 + VPP_JOURNAL_HEADER + 300);
	ck_assert_int_ge(n, 400 - 20);
	ck_assert_int_lt(n, 400);

	/* Now the segment being written: the records after it are read. */
	damage_segment(0, 3);
	int before = read_skipping(j, &skipped);
	append_n(j, 400, 410);
	int after = read_skipping(j, &skipped);
	ck_assert_int_eq(after, before + 10);
	vpp_journal_close(j);
	rm_tmp();
}
END_TEST

Suite *test_journal_suite(void);

Suite *test_journal_suite(void)
{
	Suite *s = suite_create("journal");
	TCase *tc = tcase_create("journal");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, crc32c_standard_vector);
	tcase_add_test(tc, roundtrip_across_reopen);
	tcase_add_test(tc, uncommitted_records_are_not_readable);
	tcase_add_test(tc, torn_last_record_is_cut);
	tcase_add_test(tc, torn_header_is_cut);
	tcase_add_test(tc, corrupt_payload_is_detected);
	tcase_add_test(tc, garbage_tail_is_cut);
	tcase_add_test(tc, segments_roll_and_release);
	tcase_add_test(tc, one_owner_per_folder);
	tcase_add_test(tc, oversized_record_refused);
	tcase_add_test(tc, damage_found_while_reading_skips_one_segment);
	tcase_add_test(tc, out_of_descriptors_is_not_damage);
	tcase_add_test(tc, read_error_at_open_keeps_the_segment);
	suite_add_tcase(s, tc);
	return s;
}
