/* SPDX-License-Identifier: MIT */
/* txhelp.h - what the suites of the transaction layer share: a region of
 * their own, and transactions that must start. */
#ifndef SHSET_TXHELP_H
#define SHSET_TXHELP_H

#include "helpers.h"

#include "region.h"
#include "table.h"
#include "tx.h"

/* A fresh region of @max bytes at most with a @log_bytes undo log, with
 * the table's state initialised and no table yet. */
static inline struct region *txh_region(uint64_t max, uint64_t log_bytes, const char *name)
{
	struct region *r = NULL;
	struct region_opts o = {.max_size = max, .log_bytes = log_bytes, .name = name};

	ck_assert_int_eq(region_create(&r, &o), 0);
	ck_assert_int_eq(table_init(r, 0), 0);
	return r;
}

/* tx_begin that must succeed. */
static inline struct tx *txh_begin(struct region *r, struct tx *mem)
{
	int err = 1;
	struct tx *x = tx_begin(r, mem, &err);

	ck_assert_int_eq(err, 0);
	ck_assert_ptr_nonnull(x);
	return x;
}

#endif
