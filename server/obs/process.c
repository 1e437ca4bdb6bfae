/* The standard Prometheus process metrics that an operator of many
 * sockets watches: open file descriptors against the limit, resident
 * memory, read from /proc when /metrics is scraped; and the process
 * settings (open files, malloc) that programs with many sessions share. */
#include "admin_int.h"
#include "vpp/error.h"
#include "vpp/metrics.h"
#include "vpp/proc.h"

#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

long vpp_proc_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return errno == EMFILE || errno == ENFILE ? VPP_EFULL : VPP_EIO;
	long n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}

unsigned long long vpp_proc_raise_fd_limit(unsigned long long *hard)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 0;
	if (rl.rlim_cur < rl.rlim_max) {
		struct rlimit want = {rl.rlim_max, rl.rlim_max};
		if (want.rlim_cur == RLIM_INFINITY)
			want.rlim_cur = 1 << 20; /* the kernel's usual nr_open */
		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			rl.rlim_cur = want.rlim_cur;
	}
	if (hard)
		*hard = rl.rlim_max;
	return rl.rlim_cur;
}

void vpp_proc_tune_malloc(void)
{
	mallopt(M_TRIM_THRESHOLD, 4 << 20);
}

static double resident_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	if (!f)
		return -1;
	unsigned long size = 0, resident = 0;
	int ok = fscanf(f, "%lu %lu", &size, &resident) == 2;
	fclose(f);
	return ok ? (double)resident * (double)sysconf(_SC_PAGESIZE) : -1;
}

void vpp__process_metrics_update(void)
{
	/* Looked up on each scrape (a lock and a name look-up): cheap at
	 * that rate, and never stale after vpp_metrics_reset(). */
	struct rlimit rl;
	double limit = -1;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		limit = (double)rl.rlim_cur;
	vpp_gauge_set(vpp_gauge_get("process_max_fds", NULL,
	                            "Open-file limit (every device session is one)"),
	              limit);
	long n = vpp_proc_open_fds();
	/* No descriptor left to count with: the process is at its limit. */
	double open = n >= 0 ? (double)n : n == VPP_EFULL ? limit : -1;
	if (open >= 0)
		vpp_gauge_set(vpp_gauge_get("process_open_fds", NULL, "Open file descriptors"),
		              open);
	double r = resident_bytes();
	if (r >= 0)
		vpp_gauge_set(
		    vpp_gauge_get("process_resident_memory_bytes", NULL, "Resident memory"), r);
}
