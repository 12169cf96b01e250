/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An adapter block's effective configuration as one canonical text: every
 * option of the adapter block and of its ingest and stream blocks, after
 * defaults are applied, in a fixed order. A reload compares these texts to
 * tell an unchanged adapter from a changed one, so writing out a default
 * value, reordering options or reformatting the file is not a change.
 */
#ifndef CAD_CONFIG_EFFECTIVE_H
#define CAD_CONFIG_EFFECTIVE_H

#include "config.h"

/* The text, malloc'd into *out. Holds secrets (passwords, tokens): it is
 * for comparing, never for printing. Returns 0 or -ENOMEM. */
CAD_MUSTCHECK int config_effective_text(char **out, const struct adapter_config *ac);

/* Whether two checked blocks have the same effective configuration. On
 * -ENOMEM, answers false: a needless hand-over loses nothing. */
bool config_effective_same(const struct adapter_config *a, const struct adapter_config *b);

#endif
