/* leasetest.h - what the lease integration tests (test_leases.c, test_kinesis_leases.c)
 * share: waiting for a condition, and the audit of the processes' lease trails. */
#ifndef SPATE_TESTS_LEASETEST_H
#define SPATE_TESTS_LEASETEST_H

#include <stdbool.h>

/* Poll cond(arg) every 100 ms for up to ms; whether it became true (checked once more at
 * the end). */
bool lt_wait_for(bool (*cond)(void *), void *arg, int ms);
/* The audit of the processes whos[0..n) whose stderr (log.level=debug) is in DIR/WHO.err:
 * no checkpoint was written (sent) by a process for a partition after another process's
 * acquire of it with a higher counter had returned. Asserts that there was an acquire;
 * returns the number of checkpoint writes audited. */
int lt_check_audit(const char *dir, const char *const *whos, int n);

#endif
