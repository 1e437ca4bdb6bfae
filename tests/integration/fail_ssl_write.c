/* LD_PRELOAD shim for tests: SSL_write fails while the file named by
 * $VPP_TEST_FAIL_SSL_WRITE exists, as it would on an OpenSSL error or out of
 * memory, so a test can make vppd's writes fail at a moment it chooses. */
#include <dlfcn.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int SSL_write(SSL *ssl, const void *buf, int num)
{
	static int (*real)(SSL *, const void *, int);
	const char *flag = getenv("VPP_TEST_FAIL_SSL_WRITE");
	if (flag && access(flag, F_OK) == 0)
		return -1;
	if (!real) {
		void *sym = dlsym(RTLD_NEXT, "SSL_write");
		memcpy(&real, &sym, sizeof(real)); /* POSIX: a data pointer holds it */
	}
	return real(ssl, buf, num);
}
