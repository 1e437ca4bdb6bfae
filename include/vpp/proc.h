/* Facts about this process that its operators watch. */
#ifndef VPP_PROC_H
#define VPP_PROC_H

/* Open file descriptors of this process (from /proc/self/fd); VPP_EFULL
 * when none is left to count them with (the process is at its open-file
 * limit), VPP_EIO when /proc cannot be read. */
long vpp_proc_open_fds(void);

#endif
