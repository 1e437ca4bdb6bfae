/* Runs the one Check suite named by VPP_SUITE (set by meson per module). */
#include <check.h>
#include <stdlib.h>

Suite *VPP_SUITE(void);

int main(void)
{
	SRunner *sr = srunner_create(VPP_SUITE());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
