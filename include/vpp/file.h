/* Small files an operator hands vppd (settings, tokens): read whole. */
#ifndef VPP_FILE_H
#define VPP_FILE_H

#include <stddef.h>

/* Reads the file at |path| (a regular file, or a pipe such as a shell's
 * <(...)) into a malloc'd, NUL-terminated |*ret| of |*len| bytes. Returns
 * 0; VPP_ENOMEM; or VPP_EINVAL with |err| saying why: it cannot be opened,
 * is not a file, is larger than |max| bytes, holds a NUL byte or cannot be
 * read. On failure the partial contents are wiped (they may be secret). */
int vpp_file_read_small(const char *path, size_t max, char **ret, size_t *len, char *err,
			size_t errlen);

#endif
