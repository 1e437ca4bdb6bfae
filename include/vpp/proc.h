/* Facts about this process that its operators watch. */
#ifndef VPP_PROC_H
#define VPP_PROC_H

/* Open file descriptors of this process (from /proc/self/fd); VPP_EFULL
 * when none is left to count them with (the process is at its open-file
 * limit), VPP_EIO when /proc cannot be read. */
long vpp_proc_open_fds(void);

/* Raises the soft open-file limit to the hard one (every session is a
 * socket; a shell often starts at 1,024). Returns the soft limit in force
 * after, |*hard| (if not NULL) the hard one; 0 when unknown. */
unsigned long long vpp_proc_raise_fd_limit(unsigned long long *hard);

/* For programs holding many TLS sessions: SSL_MODE_RELEASE_BUFFERS (which
 * keeps idle sessions small) takes a 17 KB record buffer for each write
 * and gives it back after; without a trim threshold glibc returns the top
 * of the heap to the kernel and the next write faults the pages in again.
 * Call once at start. */
void vpp_proc_tune_malloc(void);

#endif
