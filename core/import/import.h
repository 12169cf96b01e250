/* SPDX-License-Identifier: Apache-2.0 */
/*
 * broker.conf into choria-adapterd.conf: the adapters of a Choria broker's
 * configuration, its middleware and its security provider's files, written
 * as choria-adapterd.conf(5) says them. What cannot be carried over is
 * written as a comment and warned about.
 */
#ifndef CAD_IMPORT_H
#define CAD_IMPORT_H

#include <stdio.h>

#include "broker_conf.h"

/* What Choria's JetStream adapter has written since it became choria_streams. */
#define IMPORT_CHORIA_STREAMS_PROTOCOL "choria:adapters:choria_streams:output:1"
#define IMPORT_NATSSTREAM_PROTOCOL "choria:adapters:natsstream:output:1"

/* Write the configuration for `c`, read from `source`, to `out`; warnings
 * go to `warn`, one line each. Returns the number of warnings, or -ENOMEM. */
int import_write(struct broker_conf *c, const char *source, FILE *out, FILE *warn);

#endif
