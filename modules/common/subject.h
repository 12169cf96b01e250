/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Stream subjects: a configured `topic` in which "%s" stands for the
 * sender's identity. Checked so that no sender can turn a publish into a
 * wildcard or an invalid subject.
 */
#ifndef CAD_SUBJECT_H
#define CAD_SUBJECT_H

#include <stdbool.h>
#include <stddef.h>

/* A topic is valid when it is a literal NATS subject with at most one
 * "%s" standing for whole tokens and no other '%'. On failure *why says
 * what is wrong. */
bool subject_topic_valid(const char *topic, const char **why);

/* Whether a sender id can stand in a subject: non-empty tokens separated
 * by '.', none holding '*', '>', white space or control characters. */
bool subject_sender_valid(const char *sender, size_t len);

/* Write topic with %s replaced by sender into buf. Returns the length, or
 * -EINVAL for a sender that fails subject_sender_valid(), or -ENOSPC. */
int subject_build(char *buf, size_t len, const char *topic, const char *sender, size_t sender_len);

#endif
